"""The EXP resource model through the SDK, against a real server on both back ends."""

from __future__ import annotations

import pytest

import tether
from tests.conftest import Tenant


def test_devices_create_get_find_delete(client: tether.Client) -> None:
    device = client.devices.create("player-1", {"subtype": "player"})
    assert device.name == "player-1"
    assert device.document == {"subtype": "player"}
    assert client.devices.get(device.id) == device
    found = client.devices.find(name="player-1")
    assert found.total == 1
    assert [d.id for d in found.results] == [device.id]
    client.devices.delete(device.id)
    with pytest.raises(tether.NotFoundError) as caught:
        client.devices.get(device.id)
    assert caught.value.status == 404
    assert caught.value.code == "not_found"


def test_resource_save_and_refresh(client: tether.Client) -> None:
    device = client.devices.create("old")
    other = client.devices.get(device.id)
    device.name = "new"
    device.document = {"color": "red"}
    device.save()
    assert device.name == "new"
    other.refresh()
    assert other.name == "new"
    assert other.document == {"color": "red"}
    assert other.updated_at >= other.created_at


def test_find_iterates_every_page(client: tether.Client) -> None:
    made = {client.things.create(f"thing-{i}").id for i in range(7)}
    found = client.things.find(limit=3)
    assert found.total == 7
    assert len(found.results) == 3
    assert {t.id for t in found} == made
    second = client.get("things", params={"limit": 3, "after": found.results[-1].id})
    assert second["total"] == 7, "a later page counts the whole list too"
    assert len(second["results"]) == 3
    beyond = client.get("things", params={"after": max(made)})
    assert (beyond["total"], beyond["results"]) == (7, [])


def test_relations_between_devices_locations_zones_experiences(client: tether.Client) -> None:
    hq = client.locations.create("HQ")
    lobby = client.zones.create("Lobby", {"key": "lobby"}, location_id=hq.id)
    show = client.experiences.create("Show")
    device = client.devices.create(
        "d", location_id=hq.id, zone_ids=[lobby.id], experience_id=show.id
    )
    thing = client.things.create("t", location_id=hq.id, zone_ids=[lobby.id])
    client.devices.create("elsewhere")

    assert device.get_location() == hq
    assert device.get_experience() == show
    assert device.get_zones() == [lobby]
    assert thing.get_zones() == [lobby]
    assert [d.id for d in hq.get_devices()] == [device.id]
    assert [t.id for t in hq.get_things()] == [thing.id]
    assert hq.get_zones() == [lobby]
    assert hq.get_layout_url().endswith(f"/api/v1/locations/{hq.id}/layout")
    assert lobby.key == "lobby"
    assert lobby.get_location() == hq
    assert [d.id for d in lobby.get_devices()] == [device.id]
    assert [t.id for t in lobby.get_things()] == [thing.id]
    assert [d.id for d in show.get_devices()] == [device.id]

    device.zone_ids = []
    device.location_id = None
    device.save()
    assert device.get_zones() == []
    assert device.get_location() is None
    assert lobby.get_devices().total == 0


def test_reference_to_wrong_kind_is_refused(client: tether.Client) -> None:
    thing = client.things.create("t")
    with pytest.raises(tether.ValidationError) as caught:
        client.devices.create("d", location_id=thing.id)
    assert caught.value.code == "invalid_reference"
    assert client.devices.find().total == 0


def test_deleting_a_location_unlinks_its_devices(client: tether.Client) -> None:
    hq = client.locations.create("HQ")
    device = client.devices.create("d", location_id=hq.id)
    hq.delete()
    device.refresh()
    assert device.location_id is None


def test_feeds_return_their_data(client: tether.Client) -> None:
    feed = client.feeds.create("weather", {"subtype": "weather"})
    feed.add_data({"temp": 21})
    feed.add_data({"temp": 22})
    data = feed.get_data()
    assert data.total == 2
    assert [e["value"] for e in data] == [{"temp": 21}, {"temp": 22}]


def test_content_urls_variants_and_children(client: tether.Client) -> None:
    folder = client.content.create("folder", {"subtype": "folder"})
    image = client.content.create(
        "logo", {"subtype": "image", "variants": ["thumb"]}, parent_id=folder.id
    )
    assert image.subtype == "image"
    assert image.get_url() == f"{client.url}/api/v1/content/{image.id}/data"
    assert image.has_variant("thumb")
    assert not image.has_variant("huge")
    assert image.get_variant_url("thumb").endswith("data?variant=thumb")
    assert [c.id for c in folder.get_children()] == [image.id]


def test_data_items_by_group_and_key(client: tether.Client) -> None:
    item = client.data.create("cats", "fluffy", {"color": "brown"})
    assert (item.group, item.key, item.value) == ("cats", "fluffy", {"color": "brown"})
    item.value = {"color": "black"}
    item.save()
    assert client.data.get("cats", "fluffy").value == {"color": "black"}
    client.data.create("cats", "tom", {"color": "grey"})
    client.data.create("dogs", "rex", {"color": "gold"})
    assert {i.key for i in client.data.find(group="cats")} == {"fluffy", "tom"}
    client.data.delete("cats", "fluffy")
    with pytest.raises(tether.NotFoundError):
        client.data.get("cats", "fluffy")


def test_data_item_keys_with_spaces_and_no_slashes(client: tether.Client) -> None:
    client.data.create("a b", "c?d", [1, 2])
    assert client.data.get("a b", "c?d").value == [1, 2]
    with pytest.raises(tether.ConfigurationError):
        client.data.create("a/b", "c", 1)


def test_data_value_size_is_bounded(client: tether.Client, server: object) -> None:
    big = "x" * (16 * 1024 * 1024 + 10)
    with pytest.raises(tether.BadRequestError) as caught:
        client.data.create("big", "one", big)
    assert caught.value.status == 413
    with pytest.raises(tether.NotFoundError):
        client.data.get("big", "one")


def test_unknown_fields_are_rejected(client: tether.Client) -> None:
    with pytest.raises(tether.ValidationError) as caught:
        client.post("devices", {"name": "d", "colour": "red"})
    assert "colour" in caught.value.message
    assert client.devices.find().total == 0


def test_unknown_query_parameters_are_rejected(client: tether.Client) -> None:
    """The API refuses a parameter it does not know; the SDK's find reads any keyword that is
    not a relation as a document field, which no document has here."""
    with pytest.raises(tether.ValidationError) as caught:
        client.get("devices", {"nmae": "typo"})
    assert caught.value.code == "unknown_parameter"
    client.devices.create("d")
    assert list(client.devices.find(nmae="d")) == []


def test_projects_scope_resources(client: tether.Client) -> None:
    project = client.projects.create("site-a")
    inside = client.post(f"projects/{project.id}/devices", {"name": "inside"})
    client.devices.create("outside")
    page = client.get(f"projects/{project.id}/devices")
    assert [d["id"] for d in page["results"]] == [inside["id"]]
    assert client.devices.find().total == 2
    project.delete()
    assert [d.name for d in client.devices.find()] == ["outside"]


def test_device_secret_is_shown_once_and_can_be_rotated(tenant: Tenant) -> None:
    with tenant.client() as admin:
        created = admin.post("devices", {"name": "sensor"})
        assert created["secret"]
        assert "secret" not in admin.get(f"devices/{created['id']}")
        with tether.Client(
            tenant.url, device_id=created["id"], device_secret=created["secret"]
        ) as device:
            assert device.whoami()["type"] == "device"
        new_secret = admin.devices.rotate_secret(created["id"])
    with (
        tether.Client(
            tenant.url, device_id=created["id"], device_secret=created["secret"]
        ) as device,
        pytest.raises(tether.AuthenticationError),
    ):
        device.whoami()
    with tether.Client(tenant.url, device_id=created["id"], device_secret=new_secret) as device:
        assert device.whoami()["id"] == created["id"]


@pytest.mark.anyio
async def test_async_client_twin(tenant: Tenant) -> None:
    async with tenant.async_client() as client:
        hq = await client.locations.create("HQ")
        device = await client.devices.create("d", location_id=hq.id)
        assert (await device.get_location()) == hq
        found = await client.devices.find()
        assert found.total == 1
        assert [d.id async for d in found] == [device.id]
        device.name = "renamed"
        await device.save()
        assert (await client.devices.get(device.id)).name == "renamed"
        await device.delete()
        with pytest.raises(tether.NotFoundError):
            await client.devices.get(device.id)


def test_a_created_device_holds_its_secret_once(tenant: Tenant) -> None:
    with tenant.client() as admin:
        device = admin.devices.create("kiosk")
        assert device.secret
        assert admin.devices.get(device.id).secret is None
        assert next(iter(admin.devices.find(name="kiosk"))).secret is None
    with tether.Client(
        tenant.url, device_id=device.id, device_secret=device.secret, environ={}
    ) as itself:
        assert itself.whoami()["id"] == device.id


CLOSE_ALL = """
import asyncio, sys, tether
url, org, user, password = sys.argv[1:]
people = dict(username=user, password=password, organization=org, environ={})
first, second = tether.Client(url, **people), tether.Client(url, **people)
channel = first.get_channel("lobby")
listener = channel.listen("*")
assert second.devices.find().total == 0
print(tether.close_all())
for client in (first, second):
    try:
        client.devices.find()
    except tether.ClientClosedError:
        print("closed")

async def main():
    client = tether.AsyncClient(url, **people)
    await client.whoami()
    print(await tether.aclose_all(), tether.close_all())
    try:
        await client.whoami()
    except tether.ClientClosedError:
        print("closed")

asyncio.run(main())
with tether.Client(url, **people) as again:
    print(again.devices.find().total)
"""


def test_close_all_stops_every_client_the_process_opened(tenant: Tenant) -> None:
    """In a process of its own, so it closes none of the test session's clients."""
    import subprocess
    import sys

    done = subprocess.run(
        [
            sys.executable,
            "-c",
            CLOSE_ALL,
            tenant.url,
            tenant.organization,
            tenant.username,
            tenant.password,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["2", "closed", "closed", "1", "0", "closed", "0"]
