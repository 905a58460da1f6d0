"""`tether commands` and `tether twin` against the real server, a device answering through
the SDK."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

import tether
from tests.cli.test_cli import cli, login
from tests.conftest import Tenant
from tether.cli.app import app


def test_send_to_a_device_and_by_filter_then_list_and_show(
    tenant: Tenant, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    login(tenant)
    made = json.loads(cli("devices", "create", "pump", "--json"))
    monkeypatch.setenv("TETHER_OUTBOX", str(tmp_path / "pump.db"))
    with tether.Client(tenant.url, device_id=made["id"], device_secret=made["secret"]) as dc:
        dc.commands.on("flush", lambda c: {"litres": c.payload["litres"]})
        dc.commands.start()
        one = json.loads(
            cli("commands", "send", "flush", '{"litres": 3}', "--device", "pump", "--json")
        )
        assert [(c["state"], c["result"]) for c in one] == [("succeeded", {"litres": 3})]
        many = json.loads(
            cli(
                "commands",
                "send",
                "flush",
                '{"litres": 1}',
                "--where",
                '{"name": "pump"}',
                "--json",
            )
        )
        assert [c["state"] for c in many] == ["succeeded"]
    queued = json.loads(
        cli("commands", "send", "flush", "--device", made["id"], "--wait", "0", "--json")
    )
    assert queued[0]["state"] == "queued"
    listed = json.loads(cli("commands", "list", "--state", "open", "--json"))
    assert [c["id"] for c in listed] == [queued[0]["id"]]
    assert json.loads(cli("commands", "show", queued[0]["id"], "--json"))["name"] == "flush"
    assert "Canceled" in cli("commands", "cancel", queued[0]["id"])
    waited = CliRunner().invoke(
        app, ["commands", "send", "flush", "--device", "pump", "--wait", "0.5"]
    )
    assert waited.exit_code == 1
    assert "queued" in waited.output


def test_twin_set_show_history_and_a_stale_version(tenant: Tenant) -> None:
    login(tenant)
    cli("devices", "create", "fan")
    assert "desired is at version 1" in cli("twin", "set", "fan", '{"speed": 3}')
    cli("twin", "set", "fan", '{"site": "oslo"}', "--tags")
    shown = cli("twin", "show", "fan")
    assert 'desired (version 1): {"speed":3}' in shown
    assert 'pending: {"speed":3}' in shown
    assert json.loads(cli("twin", "show", "fan", "--json"))["tags"] == {"site": "oslo"}
    stale = CliRunner().invoke(app, ["twin", "set", "fan", '{"speed": 4}', "--if-version", "0"])
    assert stale.exit_code == 1
    assert "version 1, not 0" in stale.output
    history = json.loads(cli("twin", "history", "fan", "--json"))
    assert [(c["section"], c["version"]) for c in history] == [("desired", 1), ("tags", 1)]
    assert json.loads(cli("twin", "summary", "--json"))["pending"] == 1
