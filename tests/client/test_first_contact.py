"""What a newcomer meets in the first hour, from porting the original SDKs' examples."""

from __future__ import annotations

import io
import random
from pathlib import Path

import httpx
import pytest

import tether
from tests.conftest import Tenant
from tether.client._async_files import WINDOW


def test_the_root_folder_has_details(client: tether.Client) -> None:
    root = client.files.info("/")
    assert (root["path"], root["is_dir"]) == ("/", True)
    client.request("PUT", "files/data/a.txt", content=b"a")
    assert client.files.info("/")["updated_at"] >= root["created_at"]


def test_an_unsigned_version_cannot_be_deployed_once_the_organization_signs(
    client: tether.Client,
) -> None:
    client.request("PUT", "packages/fw/versions/1.0.0", content=b"unsigned")
    client.post("packages/signing-key", {"generate": True})
    with pytest.raises(tether.ValidationError) as refused:
        client.post("deployments", {"reference": "fw", "version": "1.0.0"})
    assert refused.value.code == "unsigned_version"
    client.request("PUT", "packages/fw/versions/1.0.1", content=b"signed by the server")
    assert client.post("deployments", {"reference": "fw", "version": "1.0.1"})["state"] == "active"


def test_a_closed_client_refuses_every_call(tenant: Tenant) -> None:
    client = tenant.client()
    assert client.get_auth().token
    client.close()
    with pytest.raises(tether.ClientClosedError):
        client.get_auth()
    with pytest.raises(tether.ClientClosedError):
        client.devices.find()


def test_data_items_have_a_channel_like_every_resource(client: tether.Client) -> None:
    item = client.data.create("settings", "volume", {"level": 7})
    assert item.get_channel().name == "data:settings/volume"


def test_answers_are_decoded_by_their_content_type(client: tether.Client) -> None:
    client.request("PUT", "files/data/number.txt", content=b"12345")
    client.request("PUT", "files/data/object.txt", content=b'{"a": 1}')
    assert client.get("files/data/number.txt") == b"12345"
    assert client.get("files/data/object.txt") == b'{"a": 1}'


def test_a_page_that_is_not_the_api_is_a_tether_error() -> None:
    """What a captive portal or a misconfigured proxy answers: 200 with an HTML page."""
    page = b"<html><body>Please sign in to the hotel wifi</body></html>"

    def portal(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=page, headers={"Content-Type": "text/html"})

    with tether.Client(
        "http://portal.invalid", token="tth_x", transport=httpx.MockTransport(portal)
    ) as client:
        with pytest.raises(tether.APIError) as caught:
            client.devices.get("some-id")
        assert caught.value.code == "unexpected_answer"


def test_latest_names_the_device_by_keyword(client: tether.Client) -> None:
    device = client.devices.create("thermometer")
    client.post(
        f"devices/{device.id}/telemetry",
        {"batch": "b", "entries": [{"ts": 1_767_225_600, "values": {"t": 21.5}}]},
    )
    assert client.telemetry.latest(device=device.id)["t"].value == 21.5
    with pytest.raises(tether.ConfigurationError, match="device="):
        client.telemetry.latest(device.id)
    with pytest.raises(tether.ConfigurationError, match="device="):
        client.telemetry.latest(["t"])


@pytest.mark.blobs
def test_a_file_goes_into_a_folder_under_its_own_name(client: tether.Client) -> None:
    info = client.files.put(("report.csv", io.BytesIO(b"a,b\n")), "/reports/")
    assert (info["path"], info["mime"]) == ("/reports/report.csv", "text/csv")
    with pytest.raises(tether.ConfigurationError):
        client.files.put(io.BytesIO(b"no name"), "/reports/")


@pytest.mark.blobs
def test_large_files_stream_a_window_at_a_time(client: tether.Client) -> None:
    data = random.Random(7).randbytes(WINDOW * 2 + 1000)
    client.files.put(("big.bin", io.BytesIO(data)), "/big.bin")
    chunks = list(client.files.iter_bytes("/big.bin"))
    assert [len(c) for c in chunks] == [WINDOW, WINDOW, 1000]
    assert b"".join(chunks) == data
    item = client.content.create("clip")
    for size in (0, WINDOW, 5):
        item.upload(("clip.mp4", io.BytesIO(data[:size])))
        assert b"".join(item.iter_bytes()) == data[:size]


@pytest.mark.blobs
def test_a_changed_file_fails_its_stream_at_the_end(client: tether.Client) -> None:
    client.files.put(io.BytesIO(b"x" * (WINDOW + 10)), "/moving.bin")
    stream = client.files.iter_bytes("/moving.bin")
    next(stream)
    client.files.put(io.BytesIO(b"y" * (WINDOW + 10)), "/moving.bin")
    with pytest.raises(tether.ChecksumError):
        list(stream)


@pytest.mark.blobs
def test_content_keeps_the_media_type_its_file_name_tells(client: tether.Client) -> None:
    item = client.content.create("logo")
    assert item.upload(("logo.png", io.BytesIO(b"\x89PNG...")))["mime"] == "image/png"
    answer = httpx.get(
        item.get_url(), headers={"Authorization": f"Bearer {client.get_auth().token}"}
    )
    assert answer.headers["content-type"] == "image/png"


@pytest.mark.blobs
def test_a_location_has_a_real_layout_image(client: tether.Client) -> None:
    hq = client.locations.create("HQ")
    with pytest.raises(tether.NotFoundError):
        hq.read_layout()
    stored = hq.upload_layout(("plan.svg", io.BytesIO(b"<svg/>")))
    assert (stored["size"], stored["mime"]) == (6, "image/svg+xml")
    assert hq.read_layout() == b"<svg/>"
    answer = httpx.get(
        hq.get_layout_url(), headers={"Authorization": f"Bearer {client.get_auth().token}"}
    )
    assert (answer.status_code, answer.content) == (200, b"<svg/>")
    assert answer.headers["content-type"] == "image/svg+xml"
    hq.upload_layout(("plan.png", io.BytesIO(b"png")))
    assert hq.read_layout() == b"png"
    client.locations.delete(hq.id)
    other = client.locations.create("elsewhere")
    with pytest.raises(tether.NotFoundError):
        other.read_layout()


@pytest.mark.blobs
def test_a_package_url_is_a_full_url(client: tether.Client, tenant: Tenant) -> None:
    client.updates.publish("fw", "1.0.0", ("fw.bin", io.BytesIO(b"firmware")))
    client.updates.deploy("fw", "1.0.0")
    device = client.post("devices", {"name": "d"})
    with tether.Client(tenant.url, device_id=device["id"], device_secret=device["secret"]) as dc:
        offer = dc.updates.check([]).available[0]
        assert offer.url.startswith(f"{tenant.url}/api/v1/")
        assert dc.get(offer.url, raw=True) == b"firmware"


def test_a_netrc_file_can_be_named(client: tether.Client, tenant: Tenant, tmp_path: Path) -> None:
    device = client.post("devices", {"name": "netrc"})
    named = tmp_path / "fleet.netrc"
    named.write_text(f"machine 127.0.0.1 login {device['id']} password {device['secret']}\n")
    named.chmod(0o600)
    with tether.Client(tenant.url, netrc=named) as dc:
        assert dc.whoami()["id"] == device["id"]
