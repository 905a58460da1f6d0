"""The objects the authorization tests act on: every kind of object in one tenant, and the
operations of the server's own OpenAPI document with bodies that pass validation, so an answer
depends only on who asks and for which id."""

from __future__ import annotations

import re
from typing import Any

import httpx

import tether
from tests.conftest import RunningServer

PUBLIC = {
    ("GET", "/api/v1/health"),
    ("POST", "/api/v1/auth/token"),
    ("POST", "/api/v1/auth/logout"),
    ("POST", "/api/v1/pairing"),
}
PLURALS = ("devices", "things", "locations", "zones", "experiences", "feeds", "content", "apps")
"""The resource kinds a tenant of the authorization tests holds one of, by their URL name."""
WRITE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}
VALID_BODIES = {
    "/data": {"value": 1},
    "/telemetry": {"batch": "b1", "entries": []},
    "/files/folders": {"path": "/new"},
    "/files/tasks": {"op": "remove", "path": "/docs/b.txt"},
    "/updates/reports": {"reference": "fw", "version": "1.0.0", "state": "installed"},
    "/commands": {"name": "c"},
    "/result": {"state": "succeeded"},
}
READS_ONLY = {"/updates/check", "/files/delta/{path}"}
"""POSTs that change nothing, which read-only credentials may send."""


def body_for(method: str, path: str) -> Any:
    """A body that passes validation, so the answer depends only on the id."""
    if method not in {"POST", "PATCH", "PUT"}:
        return None
    return next(
        (b for end, b in VALID_BODIES.items() if path.endswith(end) and method == "POST"), {}
    )


def endpoints(server: RunningServer) -> list[tuple[str, str]]:
    spec = httpx.get(f"{server.url}/api/v1/openapi.json").json()
    found = []
    for path, operations in spec["paths"].items():
        for method in operations:
            if method.upper() in {"GET", "POST", "PUT", "PATCH", "DELETE"}:
                found.append((method.upper(), path))
    assert len(found) > 50
    return sorted(found)


def populate(client: tether.Client, suffix: str = "") -> dict[str, str]:
    """One object of every kind, a project holding one of each, a data item, files, a task,
    a user, a token, a package version and its deployment, a command and a command to many
    and a twin; the ids and names that fill the operations' paths. `suffix` makes the names
    of a second tenant differ from the first's."""
    project = client.projects.create("p")
    ids: dict[str, str] = {"project_id": project.id}
    for plural in PLURALS:
        ids[plural] = client.post(f"projects/{project.id}/{plural}", {"name": "b"})["id"]
    group, key, reference = f"g{suffix}", f"k{suffix}", f"fw{suffix}"
    client.put(f"projects/{project.id}/data/{group}/{key}", {"v": 1})
    client.data.create(group, key, {"v": 1})
    path = f"docs/b{suffix}.txt"
    client.request("PUT", f"files/data/{path}", content=b"b's bytes")
    client.request("PUT", f"projects/{project.id}/files/data/{path}", content=b"b")
    task = client.post("files/tasks", {"op": "copy", "path": f"/{path}", "target": "/c.txt"})
    user = client.post("users", {"username": "bob", "password": "bob-password"})
    token = client.post("tokens", {"name": "t"})
    ids.update(user_id=user["id"], token_id=token["id"], group=group, key=key)
    ids.update(path=path, task_id=task["id"])
    version = client.request("PUT", f"packages/{reference}/versions/1.0.0", content=b"firmware")
    deployment = client.post("deployments", {"reference": reference, "version": "1.0.0"})
    ids.update(reference=reference, version="1.0.0", version_id=version["id"])
    ids.update(deployments=deployment["id"])
    ids.update(family_id=_authorized_app(client, suffix))
    device = ids["devices"]
    command = client.post(f"projects/{project.id}/devices/{device}/commands", {"name": "c"})
    group = client.post(f"projects/{project.id}/commands", {"name": "c", "device_ids": [device]})
    ids.update(commands=command["id"], groups=group["id"])
    client.patch(f"projects/{project.id}/devices/{device}/twin", {"desired": {"on": True}})
    return ids


def _authorized_app(client: tether.Client, suffix: str) -> str:
    """An app the tenant's admin let act for them: the id of that sign-in."""
    app = client.apps.create(f"dashboard{suffix}", {"redirect_uris": ["http://127.0.0.1/cb"]})
    flow = tether.OAuthFlow(client.url, app.id, "http://127.0.0.1/cb")
    query = dict(httpx.URL(flow.authorization_url).params)
    back = client.post("oauth/authorize", query)["redirect_to"]
    with tether.Client(client.url, oauth=flow.grant(back)) as on_behalf:
        on_behalf.get("auth/whoami")
    return str(client.get("oauth/authorizations")[0]["id"])


def fill(path: str, ids: dict[str, str]) -> str:
    """An operation's path with its parameters taken from `ids` (`{id}` by the plural before it)."""

    def one(match: re.Match[str]) -> str:
        name = match.group(1)
        if name == "id":
            plural = path.split("/{id}")[0].rsplit("/", 1)[1]
            return ids[plural]
        return ids[name]

    return re.sub(r"\{(\w+)\}", one, path)
