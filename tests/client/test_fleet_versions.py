"""What the fleet runs and lists in order, on both back ends: installed versions as devices
say them in their checks and reports, counted across the fleet and found by version; a device's
update history; lists sorted by name or creation, page after page."""

from __future__ import annotations

import io
from typing import Any

import pytest

import tether
from tests.conftest import RunningServer, Tenant
from tether import Package


def device_client(server: RunningServer, device: dict[str, Any]) -> tether.Client:
    return tether.Client(server.url, device_id=device["id"], device_secret=device["secret"])


def spread(client: tether.Client, reference: str | None = None) -> dict[tuple[str, str], int]:
    return {
        (row["reference"], row["version"]): row["devices"]
        for row in client.updates.installed(reference)
    }


def names(found: Any) -> list[str]:
    return [item.name for item in found]


def test_versions_across_the_fleet_follow_checks_and_reports(
    server: RunningServer, client: tether.Client, make_tenant: Any
) -> None:
    a, b, c = (client.post("devices", {"name": n}) for n in ("a", "b", "c"))
    said = [
        (a, [Package("app", "1.0")]),
        (b, [Package("app", "1.1")]),
        (c, [Package("app", "1.0"), Package("fw", "2")]),
    ]
    for device, installed in said:
        with device_client(server, device) as dc:
            dc.updates.check(installed)
            dc.updates.check(installed)
    assert spread(client) == {("app", "1.0"): 2, ("app", "1.1"): 1, ("fw", "2"): 1}
    assert spread(client, "fw") == {("fw", "2"): 1}
    assert names(client.devices.find(installed={"app": "1.0"}, sort="name")) == ["a", "c"]
    assert names(client.devices.find(installed={"app": "1.0", "fw": "2"})) == ["c"]
    assert names(client.devices.find(installed={"app": "9"})) == []
    as_json = client.get("devices", {"installed": '{"app": "1.0", "fw": "2"}'})
    assert [d["name"] for d in as_json["results"]] == ["c"]

    with device_client(server, a) as dc:
        dc.updates.check([Package("app", "1.1")])
    assert spread(client, "app") == {("app", "1.1"): 2, ("app", "1.0"): 1}

    client.updates.publish("app", "2.0", ("app.bin", io.BytesIO(b"new")))
    deployment = client.updates.deploy("app", "2.0", name="to two")
    with device_client(server, b) as dc:
        dc.updates.report("app", "2.0", "installed")
        own = dc.updates.history(b["id"])
        with pytest.raises(tether.PermissionDeniedError):
            dc.updates.installed()
        with pytest.raises(tether.PermissionDeniedError):
            dc.updates.history(a["id"])
    assert [(p["reference"], p["version"]) for p in own["installed"]] == [("app", "2.0.0")]
    assert [
        (r["deployment"], r["deployment_id"], r["version"], r["state"]) for r in own["reports"]
    ] == [("to two", deployment.id, "2.0.0", "installed")]
    assert spread(client, "app") == {("app", "1.0"): 1, ("app", "1.1"): 1, ("app", "2.0.0"): 1}

    client.devices.delete(c["id"])
    assert spread(client) == {("app", "1.1"): 1, ("app", "2.0.0"): 1}
    with make_tenant().client() as stranger:
        assert spread(stranger) == {}
        assert names(stranger.devices.find(installed={"app": "1.1"})) == []
        with pytest.raises(tether.NotFoundError):
            stranger.updates.history(a["id"])


def test_lists_sort_by_name_and_creation_across_pages(client: tether.Client) -> None:
    made = ["delta", "alpha", "Charlie", "bravo", "alpha", "echo"]
    for name in made:
        client.things.create(name)
    by_name = sorted(made)
    assert names(client.things.find(sort="name", limit=2)) == by_name
    assert names(client.things.find(sort="-name", limit=2)) == by_name[::-1]
    assert names(client.things.find(limit=2)) == made
    assert names(client.things.find(sort="created", limit=4)) == made
    assert names(client.things.find(sort="-created", limit=4)) == made[::-1]
    assert names(client.things.find(sort="name", name="alpha", limit=1)) == ["alpha", "alpha"]


@pytest.mark.parametrize(
    ("query", "problem"),
    [
        ({"sort": "size"}, "sort is one of created, -created, name, -name"),
        ({"sort": "name", "after": "not-a-cursor"}, "after is not a cursor of this list"),
        ({"installed": "app"}, "installed takes a package: installed[REFERENCE]=VERSION"),
        ({"installed[app]": ""}, "installed[app] is a version of 1 to 100 characters"),
        (
            {f"installed[p{n}]": "1" for n in range(4)},
            "installed takes at most 3 packages",
        ),
    ],
)
def test_bad_orders_and_version_filters_are_refused(
    tenant: Tenant, query: dict[str, str], problem: str
) -> None:
    with tenant.client() as client, pytest.raises(tether.ValidationError) as refused:
        client.get("devices", query)
    assert (refused.value.status, refused.value.code) == (422, "invalid_parameter")
    assert problem in str(refused.value)


def test_only_devices_filter_by_installed_version(client: tether.Client) -> None:
    with pytest.raises(tether.ValidationError, match="installed"):
        client.get("things", {"installed[app]": "1"})
