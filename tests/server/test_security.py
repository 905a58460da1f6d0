"""The walls: tenant isolation, read-only and project tokens, on every endpoint of the spec.

The endpoints are enumerated from the server's own OpenAPI document, so an endpoint added
later is covered without anyone remembering to add it here.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

import tether
from tests.conftest import RunningServer, Tenant
from tests.server.world import (
    PUBLIC,
    READS_ONLY,
    WRITE_METHODS,
    body_for,
    endpoints,
    fill,
    populate,
)


@pytest.fixture
def world(make_tenant: Callable[[], Tenant]) -> Iterator[dict[str, Any]]:
    """Two tenants; B owns one object of every kind, a project and a data item."""
    a, b = make_tenant(), make_tenant()
    with a.client() as ca, b.client() as cb:
        ids = populate(cb)
        yield {"a": ca, "b": cb, "ids": ids, "a_tenant": a, "b_tenant": b}


def test_other_tenants_ids_are_404_on_every_endpoint(
    server: RunningServer, world: dict[str, Any]
) -> None:
    a: tether.Client = world["a"]
    checked = 0
    for method, path in endpoints(server):
        if "{" not in path or (method, path) in PUBLIC:
            continue
        if method == "PUT" and path.endswith(
            ("/data/{group}/{key}", "/files/data/{path}", "/versions/{version}")
        ):
            continue  # an upsert by name in the caller's own namespace, not an id
        url = fill(path, world["ids"])
        try:
            a.request(method, url, json=body_for(method, path))
        except tether.NotFoundError:
            checked += 1
        else:
            pytest.fail(f"{method} {path} answered another tenant's id")
    assert checked > 30
    b: tether.Client = world["b"]
    assert b.devices.get(world["ids"]["devices"]).name == "b"
    assert b.data.get("g", "k").value == {"v": 1}


def test_every_endpoint_needs_credentials(server: RunningServer) -> None:
    for method, path in endpoints(server):
        if (method, path) in PUBLIC:
            continue
        url = server.url + re.sub(r"\{\w+\}", "x", path)
        response = httpx.request(method, url, json={})
        assert response.status_code == 401, (method, path)
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["code"] == "unauthenticated"


def test_read_only_token_is_refused_every_write(
    server: RunningServer, world: dict[str, Any]
) -> None:
    b: tether.Client = world["b"]
    token = b.post("tokens", {"name": "ro", "read_only": True})["token"]
    with tether.Client(server.url, token=token) as ro:
        assert ro.devices.get(world["ids"]["devices"]).name == "b"
        for method, path in endpoints(server):
            if method not in WRITE_METHODS or (method, path) in PUBLIC:
                continue
            if path.endswith(tuple(READS_ONLY)):
                continue
            with pytest.raises(tether.PermissionDeniedError) as caught:
                ro.request(method, fill(path, world["ids"]), json=body_for(method, path))
            assert caught.value.code == "read_only", (method, path)
    assert b.devices.get(world["ids"]["devices"]).name == "b"


def test_project_token_stays_in_its_project(server: RunningServer, world: dict[str, Any]) -> None:
    b: tether.Client = world["b"]
    ids = world["ids"]
    token = b.post("tokens", {"name": "proj", "project_id": ids["project_id"]})["token"]
    other = b.projects.create("other")
    with tether.Client(server.url, token=token) as scoped:
        assert scoped.devices.get(ids["devices"]).id == ids["devices"]
        assert scoped.get("devices")["total"] == 1
        made = scoped.devices.create("new one")
        assert made.project_id == ids["project_id"]
        assert scoped.data.get("g", "k").value == {"v": 1}
        for method, path in endpoints(server):
            if path.startswith("/api/v1/projects/{project_id}") or (method, path) in PUBLIC:
                continue
            if path in ("/api/v1/auth/whoami", "/api/v1/organizations/current"):
                continue
            with pytest.raises(tether.PermissionDeniedError) as caught:
                scoped.request(method, fill(path, ids), json=body_for(method, path))
            assert caught.value.code == "outside_project", (method, path)
        with pytest.raises(tether.PermissionDeniedError):
            scoped.get(f"/api/v1/projects/{other.id}/devices")


def test_problem_documents_have_one_shape(server: RunningServer, client: tether.Client) -> None:
    token = client.get_auth().token
    response = httpx.post(
        f"{server.url}/api/v1/devices",
        json={"name": 5},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert set(problem) >= {"type", "title", "status", "detail", "code", "instance"}
    assert problem["status"] == 422
    assert problem["code"] == "invalid"
    malformed = httpx.post(
        f"{server.url}/api/v1/devices",
        content=b"{nope",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    assert malformed.status_code == 400
    assert malformed.json()["code"] == "malformed"


def test_page_size_is_bounded(client: tether.Client) -> None:
    with pytest.raises(tether.ValidationError):
        client.devices.find(limit=100000)
    with pytest.raises(tether.ValidationError):
        client.devices.find(limit=0)


def test_devices_cannot_create_devices(tenant: Tenant) -> None:
    with tenant.client() as admin:
        created = admin.post("devices", {"name": "d"})
    with tether.Client(
        tenant.url, device_id=created["id"], device_secret=created["secret"]
    ) as device:
        with pytest.raises(tether.PermissionDeniedError):
            device.things.create("seen")
        with pytest.raises(tether.PermissionDeniedError):
            device.devices.create("another")
        with pytest.raises(tether.PermissionDeniedError):
            device.post("tokens", {"name": "x"})
