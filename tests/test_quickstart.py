"""docs/quickstart.md, run as written: its `sh background` block starts the cloud with the
README's own `scripts/serve`, then every other block runs in order in one shell (`python
file=NAME` blocks are saved under that name first), as a newcomer would type them. Only the
port and the data folder differ, so the test never takes port 8000 or writes into the
checkout."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port, wait_for

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "docs" / "quickstart.md"
BLOCK = re.compile(r"^```(\w+)([^\n]*)\n(.*?)^```$", re.S | re.M)


def blocks() -> list[tuple[str, str, str]]:
    """The page's code blocks as (language, info after it, text)."""
    return [(m[1], m[2].strip(), m[3]) for m in BLOCK.finditer(QUICKSTART.read_text())]


def script(port: int) -> str:
    """Every block but the server's, as one bash script that stops at the first failure."""
    lines = ["set -euo pipefail"]
    for language, info, text in blocks():
        if info == "background":
            continue
        if language == "python":
            name = info.removeprefix("file=")
            lines.append(f"cat > {name} <<'PYTHON'\n{text}PYTHON")
        else:
            lines.append(text)
    return "\n".join(lines).replace("127.0.0.1:8000", f"127.0.0.1:{port}")


@pytest.mark.subprocess
def test_the_quickstart_runs_as_written(tmp_path: Path) -> None:
    (background,) = [text for _, info, text in blocks() if info == "background"]
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TETHER_")}
    env |= {
        "HOME": str(tmp_path),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "PATH": f"{Path(sys.executable).parent}:{env['PATH']}",
    }
    server_env = env | {
        "TETHER_PORT": str(port),
        "TETHER_DATA": str(tmp_path / "tether-data"),
        "TETHER_ADMIN_PASSWORD": "quickstart-pw",
    }
    with (tmp_path / "serve.log").open("w") as log:
        server = subprocess.Popen(
            ["bash", "-c", background], cwd=ROOT, env=server_env, stdout=log, stderr=log
        )
    try:

        def healthy() -> bool:
            if server.poll() is not None:
                raise AssertionError((tmp_path / "serve.log").read_text())
            try:
                return httpx.get(f"http://127.0.0.1:{port}/api/v1/health").status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(healthy, timeout=120, what="scripts/serve")
        work = tmp_path / "work"
        work.mkdir()
        done = subprocess.run(
            ["bash", "-c", script(port)],
            cwd=work,
            env=env,
            input="quickstart-pw\n",
            capture_output=True,
            text=True,
            timeout=300,
        )
    finally:
        server.terminate()
        server.wait(30)
    said = done.stdout + done.stderr
    assert done.returncode == 0, said
    assert "Pushed 1 entry." in said
    assert "latest: 22.4" in said
    (downloaded,) = (work / "downloads").glob("*_firmware-1.0.0.bin")
    assert downloaded.read_text() == "firmware 1.0.0\n"
    assert (work / "copy.txt").read_bytes() == (work / "log.txt").read_bytes()
    assert '"ok": true' in said
    assert '"type": "device"' in said
    assert f"http://127.0.0.1:{port}/" in (tmp_path / "serve.log").read_text()
