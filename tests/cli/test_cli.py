"""The `tether` command, against a real server: in-process for most verbs, and once as real
processes (`tether serve` plus CLI calls) from first start to a listed device."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

import tether
from tests.conftest import Tenant, free_port, wait_for
from tether.cli import output
from tether.cli.app import app

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()


def cli(*args: str) -> str:
    result = runner.invoke(app, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def login(tenant: Tenant, url: str | None = None) -> None:
    """`tether login` as the tenant's admin (at `url`, by default the tenant's), saving the
    token for later commands."""
    cli(
        "login",
        url or tenant.url,
        "--organization",
        tenant.organization,
        "--username",
        "admin",
        "--password",
        tenant.password,
    )


def test_login_whoami_tokens_devices_request(tenant: Tenant) -> None:
    login(tenant)
    assert json.loads(cli("whoami", "--json"))["organization"]["name"] == tenant.organization
    created = json.loads(cli("devices", "create", "sensor", "--document", '{"a": 1}', "--json"))
    assert created["secret"]
    listed = json.loads(cli("devices", "list", "--json"))
    assert [d["name"] for d in listed] == ["sensor"]
    assert "sensor" in cli("devices", "list")
    assert json.loads(cli("devices", "show", created["id"], "--json"))["document"] == {"a": 1}
    token = json.loads(cli("tokens", "create", "ro", "--read-only", "--json"))
    assert token["read_only"] is True
    ids = {t["id"] for t in json.loads(cli("tokens", "list", "--json"))}
    assert token["id"] in ids
    cli("tokens", "revoke", token["id"])
    assert json.loads(cli("request", "GET", "devices", "-p", "limit=1"))["total"] == 1
    cli("devices", "delete", created["id"])
    assert json.loads(cli("devices", "list", "--json")) == []
    cli("logout")
    result = runner.invoke(app, ["whoami", "--url", tenant.url])
    assert result.exit_code == 1


def test_errors_are_one_clear_line(tenant: Tenant) -> None:
    result = runner.invoke(
        app, ["devices", "show", "nope", "--url", tenant.url], env={"TETHER_TOKEN": "tth_bad"}
    )
    assert result.exit_code == 1
    assert "401" in result.output
    assert "Traceback" not in result.output


def test_cli_reference_and_settings_docs_are_current() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gendocs.py"), "--check"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.subprocess
def test_real_processes_from_first_start_to_a_device(tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TETHER_")}
    env |= {
        "TETHER_ADMIN_PASSWORD": "first-admin-pw",
        "HOME": str(tmp_path),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
    }
    tether_cmd = str(Path(sys.executable).parent / "tether")
    server = subprocess.Popen(
        [tether_cmd, "serve", "--data", str(tmp_path / "data"), "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:

        def healthy() -> bool:
            try:
                return httpx.get(f"{url}/api/v1/health").status_code == 200
            except httpx.HTTPError:
                return server.poll() is not None

        wait_for(healthy, what="tether serve")
        assert server.poll() is None
        assert (tmp_path / "data" / "tether.db").exists()

        def run(*args: str) -> str:
            done = subprocess.run(
                [tether_cmd, *args], env=env, capture_output=True, text=True, timeout=60
            )
            assert done.returncode == 0, done.stderr
            return done.stdout

        run(
            "login",
            url,
            "--organization",
            "main",
            "--username",
            "admin",
            "--password",
            "first-admin-pw",
        )
        run("devices", "create", "from-a-process")
        assert [d["name"] for d in json.loads(run("devices", "list", "--json"))] == [
            "from-a-process"
        ]
        spec = httpx.get(f"{url}/api/v1/openapi.json").json()
        assert "/api/v1/devices" in spec["paths"]
    finally:
        server.terminate()
        output, _ = server.communicate(timeout=30)
    assert f"console:  {url}/" in output
    assert f"Sign in to the console at {url}/" in output
    assert '"GET /api/v1/openapi.json HTTP/1.1" 200' in output
    assert "created organization 'main' with admin 'admin'" in output
    assert "tether login" in output


def test_telemetry_push_latest_query(tenant: Tenant, tmp_path: Path) -> None:
    with tenant.client() as admin:
        device = admin.post("devices", {"name": "probe"})
    env = {
        "TETHER_URL": tenant.url,
        "TETHER_DEVICE_ID": device["id"],
        "TETHER_DEVICE_SECRET": device["secret"],
        "TETHER_OUTBOX": str(tmp_path / "outbox.db"),
    }
    for i, ts in enumerate(
        ("2026-01-01T00:00:00Z", "2026-01-01T00:00:30Z", "2026-01-01T00:01:00Z")
    ):
        result = runner.invoke(
            app, ["telemetry", "push", f"temp={20 + i}", "mode=eco", "on=true", "--ts", ts], env=env
        )
        assert result.exit_code == 0, result.output
        assert "Pushed 1 entry." in result.output
    latest = json.loads(
        runner.invoke(app, ["telemetry", "latest", device["id"], "--json"], env=env).output
    )
    assert {r["field"]: r["value"] for r in latest} == {"temp": 22, "mode": "eco", "on": True}
    per_minute = runner.invoke(
        app,
        ["telemetry", "query", device["id"], "--field", "temp", "--every", "1m", "--json"],
        env=env,
    )
    assert [r["value"] for r in json.loads(per_minute.output)] == [20.5, 22.0]
    table_output = runner.invoke(app, ["telemetry", "latest", device["id"]], env=env).output
    assert "temp" in table_output
    assert "eco" in table_output
    bad = runner.invoke(app, ["telemetry", "push", "novalue"], env=env)
    assert bad.exit_code == 1
    assert "FIELD=VALUE" in bad.output
    offline = runner.invoke(
        app, ["telemetry", "push", "temp=1", "--url", f"http://127.0.0.1:{free_port()}"], env=env
    )
    assert offline.exit_code == 1
    assert "still queued" in offline.output
    assert runner.invoke(app, ["telemetry", "push", "temp=2"], env=env).output.startswith(
        "Pushed 2"
    )


def test_files_commands(tenant: Tenant, tmp_path: Path) -> None:
    env = {"TETHER_URL": tenant.url}
    login(tenant)
    local = tmp_path / "photo.jpg"
    local.write_bytes(os.urandom(300_000))
    assert "/pics/photo.jpg (300000 bytes" in cli("files", "put", str(local), "/pics/photo.jpg")
    listed = json.loads(cli("files", "ls", "/pics", "--json"))
    assert [(e["name"], e["type"]) for e in listed] == [("photo.jpg", "image/jpeg")]
    assert "succeeded" in cli("files", "cp", "/pics", "/backup")
    cli("files", "get", "/backup/photo.jpg", str(tmp_path / "back.jpg"))
    assert (tmp_path / "back.jpg").read_bytes() == local.read_bytes()
    edited = bytearray(local.read_bytes())
    edited[1000:1010] = b"0123456789"
    local.write_bytes(edited)
    out = cli("files", "sync", str(local), ":/pics/photo.jpg")
    sent = int(out.split("sent ")[1].split(" ")[0])
    assert sent < 100_000
    down = cli("files", "sync", ":/pics/photo.jpg", str(tmp_path / "back.jpg"))
    assert (tmp_path / "back.jpg").read_bytes() == bytes(edited)
    fetched, size = (int(n) for n in down.split("fetched ")[1].split(" bytes for "))
    assert fetched < 100_000
    assert size == len(edited)
    assert "succeeded" in cli("files", "rm", "/backup")
    bad = runner.invoke(app, ["files", "put", str(local), "../escape"], env=env)
    assert bad.exit_code == 1
    assert ".." in bad.output
    missing = runner.invoke(app, ["files", "info", "/nope"], env=env)
    assert missing.exit_code == 1
    assert "404" in missing.output


def test_listen_and_broadcast_as_real_processes(tenant: Tenant, tmp_path: Path) -> None:
    with tenant.client() as admin:
        token = admin.post("tokens", {"name": "cli"})["token"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("TETHER_")}
    env |= {"TETHER_URL": tenant.url, "TETHER_TOKEN": token, "HOME": str(tmp_path)}
    tether_cmd = str(Path(sys.executable).parent / "tether")
    listener = subprocess.Popen(
        [tether_cmd, "listen", "kiosk", "volume", "--count", "1", "--respond", '{"ok": true}'],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:

        def answered() -> bool:
            done = subprocess.run(
                [tether_cmd, "broadcast", "kiosk", "volume", '{"level": 3}', "--timeout", "1"],
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert done.returncode == 0, done.stderr
            answers = json.loads(done.stdout)
            if answers:
                assert answers[0]["from"]["type"] == "user"
                assert answers[0]["from"]["name"] == "admin"
                assert "1 answer in 1.0 s" in done.stderr
            return [a["payload"] for a in answers] == [{"ok": True}]

        wait_for(answered, timeout=60, what="the listener to answer")
        out, said = listener.communicate(timeout=30)
    finally:
        listener.kill()
    assert json.loads(out.splitlines()[0]) == {"name": "volume", "payload": {"level": 3}}
    assert "Listening to 'volume' on channel 'kiosk'" in said
    bad = runner.invoke(
        app, ["broadcast", "kiosk", "volume", "{nope"], env={"TETHER_URL": tenant.url}
    )
    assert bad.exit_code == 1
    assert "JSON" in bad.output


def test_packages_and_deployments_commands(tenant: Tenant, tmp_path: Path) -> None:
    env = {"TETHER_URL": tenant.url}
    login(tenant)
    key = tmp_path / "signing.pem"
    assert "server_held" in cli("packages", "create-key", "--out", str(key))
    assert key.stat().st_mode & 0o777 == 0o600
    firmware = tmp_path / "fw-1.4.bin"
    firmware.write_bytes(os.urandom(200_000))
    published = json.loads(
        cli(
            "packages",
            "publish",
            "fw",
            "1.4",
            str(firmware),
            "--key",
            str(key),
            "--metadata",
            '{"notes": "x"}',
            "--json",
            "-q",
        )
    )
    assert (published["version"], published["filename"]) == ("1.4.0", "fw-1.4.bin")
    unsigned = runner.invoke(app, ["packages", "publish", "fw", "1.5", str(firmware)], env=env)
    assert unsigned.exit_code == 1
    assert "signature_required" in unsigned.output
    assert "fw" in cli("packages", "list")
    created = json.loads(
        cli(
            "deployments",
            "create",
            "fw",
            "1.4.0",
            "--percent",
            "10",
            "--rule",
            '{"property": "region", "equals": "eu"}',
            "--json",
        )
    )
    assert (created["state"], created["percentage"]) == ("active", 10.0)
    assert "50.0" in cli("deployments", "set", created["id"], "--percent", "50")
    assert "paused" in cli("deployments", "pause", created["id"])
    shown = cli("deployments", "show", created["id"])
    assert "reports installed" in shown
    assert "paused" in shown
    listed = json.loads(cli("deployments", "list", "--json"))
    assert [(d["id"], d["state"], d["installed"]) for d in listed] == [(created["id"], "paused", 0)]
    with tenant.client() as admin:
        device = admin.post("devices", {"name": "d"})["id"]
    cli("deployments", "resume", created["id"])
    cli("deployments", "set", created["id"], "--percent", "100")
    checked = json.loads(
        cli("updates", "check", "--device", device, "--property", "region=eu", "--json")
    )
    assert checked == [
        {"list": "available", "reference": "fw", "version": "1.4.0", "size": 200_000}
    ]
    assert "fw" in cli("deployments", "list").split("\n")[1]
    reported = json.loads(
        cli(
            "updates",
            "report",
            "fw",
            "1.4.0",
            "failed",
            "--reason",
            "disk full",
            "--device",
            device,
            "--json",
        )
    )
    assert reported == {"deployment_id": created["id"], "deployment_state": "active"}
    assert [d["failed"] for d in json.loads(cli("deployments", "list", "--json"))] == [1]
    bad_state = runner.invoke(app, ["updates", "report", "fw", "1.4.0", "done"], env=env)
    assert bad_state.exit_code == 1
    assert "downloading, installed, failed" in bad_state.output
    nothing = runner.invoke(
        app, ["updates", "check", "--device", device, "--installed", "fw=1.4.0"], env=env
    )
    assert nothing.exit_code == 0
    assert "Nothing to install" in nothing.output
    bad_rule = runner.invoke(
        app, ["deployments", "create", "fw", "1.4.0", "--rule", "{nope"], env=env
    )
    assert bad_rule.exit_code == 1
    assert "not JSON" in bad_rule.output


def test_tables_show_whole_the_values_people_copy(
    tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a terminal of 80 columns, ids and the shown-once token are printed whole, not cut to
    an ellipsis."""
    login(tenant)
    made = json.loads(cli("devices", "create", "a device with a rather long name", "--json"))
    token = json.loads(cli("tokens", "create", "ci", "--json"))
    narrow = output.Console(width=80, force_terminal=True, color_system=None)
    monkeypatch.setattr(output, "console", narrow)
    with narrow.capture() as shown:
        output.table([made], ["id", "name"], False)
        output.record(token, False)
    text = shown.get()
    assert made["id"] in text
    assert token["token"] in text.replace("│", "").replace(" ", "").replace("\n", "")


def test_files_get_to_a_folder_or_standard_output(
    tenant: Tenant, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    login(tenant)
    source = tmp_path / "report.txt"
    source.write_bytes(b"twelve bytes")
    cli("files", "put", str(source), "/docs/report.txt", "--quiet")
    into = tmp_path / "downloads"
    into.mkdir()
    monkeypatch.chdir(into)
    cli("files", "get", "/docs/report.txt", ".", "--quiet")
    assert (into / "report.txt").read_bytes() == b"twelve bytes"
    assert cli("files", "get", "/docs/report.txt", "-") == "twelve bytes"
    missing = runner.invoke(app, ["files", "put", "nowhere.bin", "/x.bin", "--quiet"])
    assert missing.exit_code == 1
    assert "No such file or folder: nowhere.bin" in missing.output
    assert "Errno" not in missing.output


def test_pair_shows_its_code_once_and_prints_credentials_that_work(tenant: Tenant) -> None:
    nowhere = runner.invoke(app, ["pair"])
    assert nowhere.exit_code == 1
    assert "Which server?" in nowhere.output
    env = {k: v for k, v in os.environ.items() if not k.startswith("TETHER_")}
    command = [str(Path(sys.executable).parent / "tether"), "pair", "--url", tenant.url, "--json"]
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert process.stderr is not None
        shown = [process.stderr.readline() for _ in range(2)]
        code = shown[1].split("Pairing code: ")[1].split()[0]
        with tenant.client() as admin:
            device = admin.post("pairing/approve", {"user_code": code, "name": "paired"})
        out, rest = process.communicate(timeout=60)
    finally:
        process.kill()
    assert "secret" not in device
    said = shown[0] + shown[1] + rest
    assert said.count("Pairing code") == 1
    assert "pairing: approve code" not in said
    credentials = json.loads(out)
    assert credentials["device_id"] == device["id"]
    with tether.Client(tenant.url, **credentials) as paired:
        assert paired.whoami()["id"] == device["id"]


def test_deployment_options_fail_with_their_own_words(tenant: Tenant, tmp_path: Path) -> None:
    login(tenant)
    firmware = tmp_path / "fw.bin"
    firmware.write_bytes(b"firmware")
    cli("packages", "publish", "fw", "1.0.0", str(firmware), "--quiet")
    listed = json.loads(cli("packages", "list", "--json"))
    assert listed[0]["signed"] is False
    bad_rule = runner.invoke(app, ["deployments", "create", "fw", "1.0.0", "--rule", "region=eu"])
    assert bad_rule.exit_code == 1
    assert '"property": "region"' in bad_rule.output
    assert "level" not in bad_rule.output
    too_much = runner.invoke(app, ["deployments", "create", "fw", "1.0.0", "--percent", "150"])
    assert too_much.exit_code == 2
    assert "less than or equal to 100" in too_much.output


def test_devices_by_name_or_id_with_a_new_secret(tenant: Tenant) -> None:
    login(tenant)
    made = json.loads(cli("devices", "create", "first-floor-thermostat", "--json"))
    assert (
        json.loads(cli("devices", "show", "first-floor-thermostat", "--json"))["id"] == made["id"]
    )
    rotated = json.loads(cli("devices", "rotate-secret", "first-floor-thermostat", "--json"))
    assert rotated["device_id"] == made["id"]
    with tether.Client(
        tenant.url, device_id=made["id"], device_secret=rotated["device_secret"], environ={}
    ) as device:
        assert device.whoami()["id"] == made["id"]
    with (
        tether.Client(
            tenant.url, device_id=made["id"], device_secret=made["secret"], environ={}
        ) as stale,
        pytest.raises(tether.AuthenticationError),
    ):
        stale.whoami()
    missing = runner.invoke(app, ["devices", "show", "basement"])
    assert missing.exit_code == 1
    assert "No device is named 'basement'" in missing.output
    cli("devices", "create", "twin")
    cli("devices", "create", "twin")
    ambiguous = runner.invoke(app, ["devices", "delete", "twin"])
    assert ambiguous.exit_code == 1
    assert "2 devices are named 'twin': give its id" in ambiguous.output
    assert "Deleted device first-floor-thermostat" in cli("devices", "delete", made["id"])


def test_piped_tables_write_every_cell_whole(tenant: Tenant) -> None:
    """CliRunner's output is not a terminal, like a pipe: no cell is cut to fit 80 columns."""
    login(tenant)
    name = "a-device-with-a-name-much-longer-than-any-eighty-column-terminal-would-show-whole"
    made = json.loads(cli("devices", "create", name, "--json"))
    line = next(row for row in cli("devices", "list").splitlines() if made["id"] in row)
    assert line.split() == [made["id"], name, "False", made["created_at"]]


@pytest.mark.subprocess
def test_serve_names_the_port_it_cannot_listen_on_before_making_an_admin(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TETHER_")}
    tether_cmd = str(Path(sys.executable).parent / "tether")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [tether_cmd, "serve", "--data", str(tmp_path / "data"), "--port", str(port)],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 1
    assert f"Cannot listen on 127.0.0.1:{port}" in done.stderr
    assert "--port" in done.stderr
    assert "created organization" not in done.stdout + done.stderr
    assert not (tmp_path / "data" / "tether.db").exists()


def test_every_setting_is_a_serve_flag_and_a_misspelt_one_is_named() -> None:
    from tether.cli.app import flag_pairs

    assert flag_pairs(["--port", "9000", "--redis-url=redis://x", "--access-log", "false"]) == [
        ("port", "9000"),
        ("redis_url", "redis://x"),
        ("access_log", "false"),
    ]
    refused = runner.invoke(app, ["serve", "--prot", "9000"])
    assert refused.exit_code == 1
    assert "No setting is called 'prot'" in refused.output
