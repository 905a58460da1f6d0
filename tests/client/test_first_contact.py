"""What a newcomer meets in the first hour, from porting the original SDKs' examples."""

from __future__ import annotations

import httpx
import pytest

import tether
from tests.conftest import Tenant


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
