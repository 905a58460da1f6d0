"""The API as a client nobody on the team wrote sees it: openapi-python-client generates a
client from the served OpenAPI document, without a warning, and that client works against a
real server (document filters, repeated fields, ranged downloads)."""

from __future__ import annotations

import importlib
import io
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import Tenant, unavailable

CONFIG = "post_hooks: []\n"
GENERATOR = Path(__file__).resolve().parents[2] / ".venv/tools/openapi/bin/openapi-python-client"
"""In a venv of its own (scripts/setup): it pins typer below what the CLI uses."""


def generate(spec_url: str, into: Path) -> Any:
    """Generate a client package from the served document; the package, imported."""
    spec = into / "openapi.json"
    spec.write_bytes(httpx.get(spec_url).content)
    operations = [
        operation
        for item in json.loads(spec.read_text())["paths"].values()
        for operation in item.values()
        if isinstance(operation, dict)
    ]
    for operation in operations:
        assert operation.get("summary"), operation["operationId"]
        assert re.fullmatch(r"[a-z][a-z_]*[a-z]", operation["operationId"]), operation
    (into / "config.yaml").write_text(CONFIG)
    if not GENERATOR.exists():
        unavailable(f"no {GENERATOR}: scripts/setup installs openapi-python-client there")
    done = subprocess.run(
        [
            str(GENERATOR),
            "generate",
            "--path",
            str(spec),
            "--meta",
            "none",
            "--output-path",
            str(into / "tether_api"),
            "--config",
            str(into / "config.yaml"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    said = done.stdout + done.stderr
    assert "warning" not in said.lower(), said
    sys.path.insert(0, str(into))
    try:
        return importlib.import_module("tether_api")
    finally:
        sys.path.remove(str(into))


def test_a_generated_client_works_without_a_warning(tenant: Tenant, tmp_path: Path) -> None:
    api = generate(f"{tenant.url}/api/v1/openapi.json", tmp_path)
    with tenant.client() as admin:
        token = admin.post("tokens", {"name": "generated"})["token"]
        admin.files.put(("blob.bin", io.BytesIO(bytes(range(256)) * 4)), "/blob.bin")
    devices_list = importlib.import_module("tether_api.api.devices.devices_list")
    devices_create = importlib.import_module("tether_api.api.devices.devices_create")
    latest = importlib.import_module("tether_api.api.telemetry.devices_telemetry_latest")
    download = importlib.import_module("tether_api.api.files.files_data_download")
    models = importlib.import_module("tether_api.models")
    client = api.AuthenticatedClient(base_url=tenant.url, token=token)
    with client:
        made = devices_create.sync(
            client=client,
            body=models.DeviceCreate(name="gen", document=_document(models, {"subtype": "kiosk"})),
        )
        devices_create.sync(client=client, body=models.DeviceCreate(name="other"))
        found = devices_list.sync(client=client, document='{"subtype": "kiosk"}')
        assert [d.id for d in found.results] == [made.id]
        refused = devices_list.sync_detailed(client=client, document="[1]")
        assert refused.status_code == 422
        with tenant.client() as admin:
            pushed = tenant_device(admin, made.id)
        with pushed:
            pushed.telemetry.add_value("t", 21.5)
            pushed.telemetry.add_value("h", 40)
            pushed.telemetry.add_value("p", 1013)
            pushed.telemetry.commit_and_push()
        two = latest.sync(client=client, id=made.id, field=["t", "h"])
        assert sorted(two.values.additional_properties) == ["h", "t"]
        every = latest.sync(client=client, id=made.id)
        assert sorted(every.values.additional_properties) == ["h", "p", "t"]
        part = download.sync_detailed(client=client, path="blob.bin", range_="bytes=10-19")
        assert part.status_code == 206
        assert part.parsed.payload.read() == bytes(range(10, 20))


def _document(models: Any, values: dict[str, Any]) -> Any:
    document = models.DeviceCreateDocument()
    document.additional_properties = values
    return document


def tenant_device(admin: Any, device_id: str) -> Any:
    import tether

    secret = admin.devices.rotate_secret(device_id)
    return tether.Client(admin.url, device_id=device_id, device_secret=secret, environ={})
