"""The package as users install it: a built wheel in a fresh venv, with no extras (a device) and
with `[server]` alone (a cloud). Slow by nature (a wheel build and two pip installs from the
registry), so each venv is built once per session."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import venv
from collections.abc import Iterator
from pathlib import Path

import pytest

import tether
from tests.conftest import RunningServer, Tenant, free_port, wait_for

ROOT = Path(__file__).resolve().parent.parent

DEVICE_FLOW = """
import hashlib, json, sys
import tether

url, device_id, secret, dest = sys.argv[1:5]
with tether.Client(url, device_id=device_id, device_secret=secret) as client:
    me = client.get_auth()
    client.telemetry.add_value("temperature", 21.5)
    client.telemetry.commit()
    pushed = client.telemetry.push()
    check = client.updates.check([])
    path = check.available[0].download(dest)
    print(json.dumps({
        "who": me.identity["id"],
        "pushed": pushed,
        "offered": [p.version for p in check.available],
        "sha256": hashlib.sha256(open(path, "rb").read()).hexdigest(),
    }))
"""


def _run(*args: str | Path, **kwargs: object) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, timeout=600, **kwargs
    )  # type: ignore[call-overload]
    assert result.returncode == 0, f"{args}: {result.stdout}\n{result.stderr}"
    return result  # type: ignore[no-any-return]


@pytest.fixture(scope="session")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    _run(sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", out, ROOT)
    (built,) = out.glob("tether-*.whl")
    return built


def _venv_with(tmp_path_factory: pytest.TempPathFactory, name: str, requirement: str) -> Path:
    folder = tmp_path_factory.mktemp(name)
    venv.create(folder, with_pip=True)
    python = folder / "bin" / "python"
    _run(python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", requirement)
    return python


@pytest.fixture(scope="session")
def light_python(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _venv_with(tmp_path_factory, "light", str(wheel))


@pytest.fixture(scope="session")
def server_python(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _venv_with(tmp_path_factory, "cloud", f"tether[server] @ {wheel.as_uri()}")


def test_light_install_has_no_server_dependencies(light_python: Path) -> None:
    code = (
        "import importlib.util as u, tether; "
        "print([m for m in ('msgspec', 'litestar', 'sqlalchemy', 'uvicorn', 'typer') "
        "if u.find_spec(m)])"
    )
    assert _run(light_python, "-c", code).stdout.strip() == "[]"


def test_light_install_runs_a_device_flow(
    light_python: Path, server: RunningServer, tenant: Tenant, tmp_path: Path
) -> None:
    with tenant.client() as admin:
        device = admin.post("devices", {"name": "light"})
        payload = os.urandom(70_000)
        admin.updates.publish("com.acme.fw", "1.0.0", ("fw.bin", io.BytesIO(payload)))
        admin.updates.deploy("com.acme.fw", "1.0.0")
        script = tmp_path / "device.py"
        script.write_text(DEVICE_FLOW)
        env = {k: v for k, v in os.environ.items() if not k.startswith("TETHER_")}
        out = _run(
            light_python, script, server.url, device["id"], device["secret"], tmp_path, env=env
        )
        result = json.loads(out.stdout)
        assert result["who"] == device["id"]
        assert result["pushed"] == 1
        assert result["offered"] == ["1.0.0"]
        assert result["sha256"] == hashlib.sha256(payload).hexdigest()
        latest = admin.telemetry.latest(["temperature"], device=device["id"])
        assert latest["temperature"].value == 21.5


def test_light_install_cli_names_its_extra(light_python: Path) -> None:
    result = subprocess.run(
        [str(light_python.parent / "tether"), "--help"], capture_output=True, text=True
    )
    assert result.returncode != 0
    assert "pip install 'tether[cli]'" in result.stderr


@pytest.fixture
def served(server_python: Path, tmp_path: Path) -> Iterator[str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TETHER_")}
    command = [str(server_python.parent / "tether"), "serve", "--port", str(port)]
    with (tmp_path / "serve.log").open("w") as log:
        process = subprocess.Popen(
            [*command, "--data", str(tmp_path / "data")], env=env, stdout=log, stderr=log
        )
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            process.terminate()
            process.wait(30)


def test_server_extra_alone_starts_the_cloud(served: str) -> None:
    import httpx

    def healthy() -> bool:
        try:
            return httpx.get(f"{served}/api/v1/health").status_code == 200
        except httpx.TransportError:
            return False

    wait_for(healthy, timeout=60, what="tether serve from the [server] install")
    assert tether.__version__
    docs = httpx.get(f"{served}/api/v1/docs").text
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css"):
        assert f"/assets/swagger-ui/{asset}" in docs
        assert httpx.get(f"{served}/assets/swagger-ui/{asset}").status_code == 200, asset
