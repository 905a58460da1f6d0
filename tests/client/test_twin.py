"""Device twins end to end against the real server, on both back ends: desired reaches a device
at once or in one catch-up, reports are applied once, If-Match stops a stale write, and only
the right principal writes each section."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

import tether
from tests.conftest import Tenant, wait_for


@pytest.fixture
def outbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "device.db"
    monkeypatch.setenv("TETHER_OUTBOX", str(path))
    return path


def device_client(tenant: Tenant, device: tether.Device) -> tether.Client:
    assert device.secret is not None
    return tether.Client(tenant.url, device_id=device.id, device_secret=device.secret)


def test_an_online_device_gets_each_desired_change_at_once(tenant: Tenant, outbox: Path) -> None:
    seen: list[tuple[dict[str, Any], dict[str, Any], int]] = []
    with tenant.client() as people:
        device = people.devices.create("thermostat")
        with device_client(tenant, device) as dc:
            dc.twins.on_desired(
                lambda patch, desired, version: seen.append((patch, desired, version))
            )
            dc.twins.start()
            people.twins.desire(device, {"target": 21, "mode": "heat"})
            people.twins.desire(device, {"mode": None})
            wait_for(lambda: len(seen) == 2, 15, "two desired changes")
            assert seen[0] == ({"target": 21, "mode": "heat"}, {"target": 21, "mode": "heat"}, 1)
            assert seen[1] == ({"mode": None}, {"target": 21}, 2)
            dc.twins.report({"target": 21})
            wait_for(lambda: people.twins.get(device)["pending"] == 0, 15, "the report")
        twin = people.twins.get(device)
        assert twin["reported"] == {"target": 21}
        assert twin["delta"] == {}
        assert twin["versions"] == {"desired": 2, "reported": 1, "tags": 0}
        assert twin["metadata"]["desired"]["target"]["version"] == 1


def test_a_device_away_during_50_changes_gets_one_delta_with_the_final_state(
    tenant: Tenant, outbox: Path
) -> None:
    calls: list[tuple[dict[str, Any], int]] = []
    with tenant.client() as people:
        device = people.devices.create("away")
        with device_client(tenant, device) as dc:
            dc.twins.on_desired(lambda patch, desired, version: calls.append((desired, version)))
            dc.twins.start()
            people.twins.desire(device, {"keep": "me", "gone": 1})
            wait_for(lambda: len(calls) == 1, 15, "the first change")
        for n in range(50):
            people.twins.desire(device, {"n": n, "gone": None} if n == 10 else {"n": n})
        with device_client(tenant, device) as dc:
            dc.twins.on_desired(lambda patch, desired, version: calls.append((desired, version)))
            dc.twins.start()
            wait_for(lambda: len(calls) == 2, 15, "the catch-up")
            assert dc.twins.desired == {"keep": "me", "n": 49}
    assert calls[1] == ({"keep": "me", "n": 49}, 51)


def test_two_writes_with_the_same_if_match_give_one_success_and_one_conflict(
    tenant: Tenant,
) -> None:
    with tenant.client() as people:
        device = people.devices.create("contended")
        version = people.twins.desire(device, {"a": 0})["versions"]["desired"]
        barrier = threading.Barrier(2)

        def write(value: int) -> str:
            barrier.wait(10)
            try:
                people.twins.desire(device, {"a": value}, if_version=version)
            except tether.ConflictError:
                return "conflict"
            return "ok"

        with ThreadPoolExecutor(2) as pool:
            outcomes = sorted(pool.map(write, [1, 2]))
        assert outcomes == ["conflict", "ok"]
        assert people.twins.get(device)["versions"]["desired"] == version + 1


def test_reports_wait_on_disk_and_are_applied_once(tenant: Tenant, outbox: Path) -> None:
    with tenant.client() as people:
        device = people.devices.create("offline-reporter")
        with device_client(tenant, device) as dc:
            store = dc.twins.store()
            for n in range(3):
                store.queue({"count": n})
            dc.twins.sync()
            dc.twins.sync()
        history = people.twins.history(device, section="reported")
        assert [change["patch"] for change in history] == [{"count": 0}, {"count": 1}, {"count": 2}]
        assert people.twins.get(device)["reported"] == {"count": 2}


def test_clear_when_reported_and_the_fleet_summary(tenant: Tenant, outbox: Path) -> None:
    with tenant.client() as people:
        first, second = people.devices.create("one"), people.devices.create("two")
        for device in (first, second):
            people.twins.clear_when_reported(device)
            people.twins.desire(device, {"fw": "2.0"})
        assert people.twins.summary() == {
            "twins": 2,
            "converged": 0,
            "pending": 2,
            "pending_keys": 2,
        }
        with device_client(tenant, first) as dc:
            dc.twins.report({"fw": "2.0"})
        twin = people.twins.get(first)
        assert (twin["desired"], twin["reported"]) == ({}, {"fw": "2.0"})
        assert people.twins.summary()["converged"] == 1


def test_each_section_has_its_writer(tenant: Tenant, make_tenant: Any, outbox: Path) -> None:
    with tenant.client() as people:
        device, other = people.devices.create("d"), people.devices.create("o")
        people.twins.tag(device, {"site": "oslo"})
        with pytest.raises(tether.PermissionDeniedError):
            people.patch(f"devices/{device.id}/twin", {"reported": {"x": 1}})
        with device_client(tenant, device) as dc:
            with pytest.raises(tether.PermissionDeniedError):
                dc.twins.desire(device, {"x": 1})
            with pytest.raises(tether.PermissionDeniedError):
                dc.twins.get(other)
            assert dc.twins.get(device)["tags"] == {"site": "oslo"}
        with make_tenant().client() as stranger, pytest.raises(tether.NotFoundError):
            stranger.twins.get(device)
        with pytest.raises(tether.BadRequestError, match="at most 65536"):
            people.twins.desire(device, {"big": "x" * 70_000})


def test_devices_are_found_by_their_twin_fields(tenant: Tenant) -> None:
    with tenant.client() as people:
        oslo, bergen = people.devices.create("oslo-1"), people.devices.create("bergen-1")
        people.twins.tag(oslo, {"site": "oslo", "rack": {"row": 3}})
        people.twins.tag(bergen, {"site": "bergen"})
        people.twins.desire(oslo, {"fan": 2})
        found = people.devices.find(tags={"site": "oslo"})
        assert [d.name for d in found.results] == ["oslo-1"]
        assert [d.name for d in people.devices.find(tags={"rack.row": 3}).results] == ["oslo-1"]
        assert [d.name for d in people.devices.find(desired={"fan": 2}).results] == ["oslo-1"]
        assert people.devices.find(reported={"fan": 2}).results == []
        group = people.commands.send_many("ping", where={"tags": {"site": "bergen"}})
        assert group.total == 1
        assert [c.device_id for c in group.commands()] == [bergen.id]
