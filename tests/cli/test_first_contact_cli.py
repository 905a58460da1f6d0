"""The CLI as a newcomer meets it: logins that follow the server however it is spelled,
errors that say what to do next, projects and users by name, a lost admin password recovered,
and help that reads like a Unix command's."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pytest
import typer.main
from typer.testing import CliRunner

import tether
from tests.cli.test_cli import cli, login
from tests.conftest import RunningServer, S3Server, Tenant, wait_for
from tether.cli.app import PANELS, app

runner = CliRunner()


def failed(*args: str, **options: object) -> str:
    result = runner.invoke(app, list(args), catch_exceptions=False, **options)  # type: ignore[arg-type]
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    return result.output


def test_a_login_serves_the_server_however_it_is_spelled(tenant: Tenant) -> None:
    port = tenant.url.rsplit(":", 1)[1]
    login(tenant, f"http://LOCALHOST:{port}/")
    for spelling in (f"http://127.0.0.1:{port}", f"http://localhost:{port}/"):
        assert json.loads(cli("whoami", "--url", spelling, "--json"))["name"] == "admin"
    login(tenant)
    assert len(json.loads((Path.home() / ".config/tether/logins.json").read_text())["servers"]) == 1


def test_without_a_login_commands_say_how_to_log_in(tenant: Tenant) -> None:
    assert "tether login URL" in failed("whoami")
    assert f"tether login {tenant.url}" in failed("devices", "list", "--url", tenant.url)
    login(tenant)
    cli("logout")
    out = failed("whoami")
    assert "Not logged in" in out
    assert "Cannot reach" not in out


def test_projects_by_name_and_tokens_bound_to_one(tenant: Tenant) -> None:
    login(tenant)
    project = json.loads(cli("projects", "create", "demo", "--json"))
    assert [p["name"] for p in json.loads(cli("projects", "list", "--json"))] == ["demo"]
    assert json.loads(cli("projects", "show", "demo", "--json"))["id"] == project["id"]
    token = json.loads(cli("tokens", "create", "ci", "--project", "demo", "--json"))
    assert token["project_id"] == project["id"]
    by_id = json.loads(cli("tokens", "create", "ci2", "--project", project["id"], "--json"))
    assert by_id["project_id"] == project["id"]
    assert "No project is named 'nope'" in failed("tokens", "create", "x", "--project", "nope")
    cli("projects", "delete", "demo")
    assert json.loads(cli("projects", "list", "--json")) == []


def test_users_create_role_reset_password_delete(tenant: Tenant) -> None:
    login(tenant)
    made = json.loads(
        cli("users", "create", "bob", "--role", "viewer", "--password", "bob-pass-1", "--json")
    )
    assert made["role"] == "viewer"
    assert json.loads(cli("users", "role", "bob", "member", "--json"))["role"] == "member"
    with tether.Client(
        tenant.url, username="bob", password="bob-pass-1", organization=tenant.organization
    ) as bob:
        assert bob.whoami()["role"] == "member"
    cli("users", "reset-password", "bob", "--password", "bob-pass-2")
    with (
        pytest.raises(tether.AuthenticationError),
        tether.Client(
            tenant.url, username="bob", password="bob-pass-1", organization=tenant.organization
        ) as bob,
    ):
        bob.whoami()
    prompted = runner.invoke(
        app, ["users", "reset-password", "bob"], input="bob-pass-3\nbob-pass-3\n"
    )
    assert prompted.exit_code == 0, prompted.output
    with tether.Client(
        tenant.url, username="bob", password="bob-pass-3", organization=tenant.organization
    ) as bob:
        assert bob.whoami()["name"] == "bob"
    assert "No user is named 'carol'" in failed("users", "role", "carol", "admin")
    cli("users", "delete", "bob")
    assert [u["username"] for u in json.loads(cli("users", "list", "--json"))] == ["admin"]


def test_admin_reset_password_recovers_a_lost_admin(
    server: RunningServer, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    if server.database_url:
        monkeypatch.setenv("TETHER_DATABASE_URL", server.database_url)
    with tenant.client() as before:
        before.whoami()
        out = cli(
            "admin",
            "reset-password",
            "admin",
            "--organization",
            tenant.organization,
            "--data",
            str(server.data),
        )
        chosen = re.search(r"shown once\): (\S+)", out)
        assert chosen is not None

        def refused() -> bool:
            try:
                before.get("devices")
            except tether.AuthenticationError:
                return True
            return False

        wait_for(refused, timeout=5, what="the old sign-in to end")
    with tether.Client(
        tenant.url, username="admin", password=chosen[1], organization=tenant.organization
    ) as after:
        assert after.whoami()["name"] == "admin"
    assert "No user 'ghost'" in failed(
        "admin",
        "reset-password",
        "ghost",
        "--organization",
        tenant.organization,
        "--data",
        str(server.data),
    )


def test_a_user_pushing_telemetry_without_a_device_leaves_nothing_queued(tenant: Tenant) -> None:
    login(tenant)
    assert "--device" in failed("telemetry", "push", "temp=3")
    assert not (Path.home() / ".local/share/tether/outbox").exists()
    with tenant.client() as client:
        telemetry = tether.Telemetry(client, outbox=Path.home() / "outbox.db")
        telemetry.add_value("temp", 3)
        with pytest.raises(tether.ConfigurationError):
            telemetry.commit()
    assert not (Path.home() / "outbox.db").exists()


def _command_paths() -> list[list[str]]:
    paths: list[list[str]] = [[]]

    def walk(command: object, path: list[str]) -> None:
        for name, sub in (getattr(command, "commands", None) or {}).items():
            paths.append([*path, name])
            walk(sub, [*path, name])

    walk(typer.main.get_command(app), [])
    return paths


def test_help_reads_like_a_unix_command() -> None:
    for path in _command_paths():
        result = runner.invoke(app, [*path, "--help"], terminal_width=100)
        assert result.exit_code == 0, path
        text = result.output
        assert "<bool>" not in text, path
        usage = next(line for line in text.splitlines() if "Usage:" in line)
        arguments = usage.split("[OPTIONS]", 1)[1]
        assert "{" not in arguments, usage
        assert arguments == arguments.upper(), usage
    login_help = runner.invoke(app, ["login", "--help"], terminal_width=100).output
    assert "login [OPTIONS] URL" in login_help
    assert "required" not in login_help.split("--organization")[1]
    root = runner.invoke(app, ["--help"], terminal_width=100).output
    shown = [panel for panel in PANELS if panel in root]
    assert shown == sorted(shown, key=root.index) == list(PANELS)
    assert root.index("serve") < root.index("login") < root.index("devices")


def test_updates_download_saves_what_the_device_should_install(
    tenant: Tenant, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with tenant.client() as admin:
        admin.updates.publish("fw", "2.0.0", ("fw.bin", io.BytesIO(b"firmware 2")))
        admin.updates.publish("ui", "1.0.0", ("ui.zip", io.BytesIO(b"ui 1")))
        admin.updates.deploy("fw", "2.0.0")
        admin.updates.deploy("ui", "1.0.0")
        key = admin.post("packages/signing-key", {"generate": True})["public_key"]
        device = admin.post("devices", {"name": "d"})
    monkeypatch.setenv("TETHER_DEVICE_ID", device["id"])
    monkeypatch.setenv("TETHER_DEVICE_SECRET", device["secret"])
    saved = json.loads(
        cli("updates", "download", "fw", "--dest", str(tmp_path), "--url", tenant.url, "--json")
    )
    assert [(s["reference"], s["version"]) for s in saved] == [("fw", "2.0.0")]
    assert Path(saved[0]["path"]).read_bytes() == b"firmware 2"
    assert "Nothing to download for nope" in failed(
        "updates", "download", "nope", "--url", tenant.url
    )
    assert "signature" in failed(
        "updates", "download", "--trust", key, "--dest", str(tmp_path), "--url", tenant.url
    )
    everything = json.loads(
        cli("updates", "download", "--dest", str(tmp_path), "--url", tenant.url, "--json")
    )
    assert sorted(s["reference"] for s in everything) == ["fw", "ui"]


def test_errors_holding_brackets_print_as_they_are(tmp_path: Path) -> None:
    out = failed("serve", "--data", str(tmp_path), env={"TETHER_BLOBS_URL": "http://not-a-bucket"})
    assert "is not s3://BUCKET[/PREFIX]" in out


def test_serve_refuses_an_object_store_it_cannot_use(tmp_path: Path, s3_server: S3Server) -> None:
    settings = s3_server.settings("x") | {"blobs_url": "s3://no-such-bucket/x"}
    env = {f"TETHER_{name.upper()}": value for name, value in settings.items()}
    assert "the object store refused" in failed("serve", "--data", str(tmp_path), env=env)
