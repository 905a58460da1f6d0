"""One regression test per authorization defect found by an attacker's review: secrets on the
event bus, a rate limit that fell to concurrency, privilege escalation, devices acting as
people, forged update reports, credentials outliving their revocation, keys at rest."""

from __future__ import annotations

import asyncio
import json
import secrets
import stat
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from websockets.asyncio.client import connect

import tether
from tests.conftest import RunningServer, Tenant
from tests.server.test_realtime import closed_by
from tether.server.db.engine import create_engine
from tether.server.db.tables import server_state, update_keys
from tether.server.identity.sealed import Sealer, SealError, master_key
from tether.server.realtime.hub import REVOKED
from tether.server.settings import Settings

API = "/api/v1"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def grant(tenant: Tenant, password: str | None = None, username: str = "admin") -> dict[str, Any]:
    return {
        "grant_type": "password",
        "username": username,
        "password": password or tenant.password,
        "organization": tenant.organization,
    }


def user(admin: tether.Client, tenant: Tenant, role: str) -> tuple[str, dict[str, str]]:
    """A new user of `role`: its id and its sign-in credentials."""
    password = secrets.token_urlsafe(12)
    name = f"{role}-{secrets.token_hex(3)}"
    made = admin.post("users", {"username": name, "password": password, "role": role})
    return made["id"], {
        "username": name,
        "password": password,
        "organization": tenant.organization,
    }


async def events_heard(server: RunningServer, token: str, action: Any) -> list[dict[str, Any]]:
    """The events a socket opened with `token` hears while `action()` runs."""
    url = server.url.replace("http://", "ws://") + f"{API}/realtime"
    heard: list[dict[str, Any]] = []
    async with connect(url, additional_headers=bearer(token)) as ws:
        await ws.send(json.dumps({"op": "events", "id": 1, "types": ["*"]}))
        assert json.loads(await ws.recv())["op"] == "ack"
        await asyncio.to_thread(action)
        await ws.send(json.dumps({"op": "who", "id": 2, "channel": "sync"}))
        while True:
            frame = json.loads(await asyncio.wait_for(ws.recv(), 10))
            if frame["op"] == "members":
                return heard
            if frame["op"] == "event":
                heard.append(frame)


def test_events_never_carry_secrets(server: RunningServer, tenant: Tenant) -> None:
    with tenant.client() as admin:
        watcher = admin.post("tokens", {"name": "ro", "read_only": True})["token"]

        def create() -> None:
            admin.post("apps", {"name": "integration"})
            admin.post("devices", {"name": "d"})
            admin.post(f"devices/{admin.post('devices', {'name': 'e'})['id']}/secret")

        heard = asyncio.run(events_heard(server, watcher, create))
    assert {e["type"] for e in heard} >= {"app", "device"}
    text = json.dumps(heard)
    assert "secret" not in text


def test_events_reach_only_who_may_read_them(server: RunningServer, tenant: Tenant) -> None:
    with tenant.client() as admin:
        me = admin.post("devices", {"name": "me"})
        other = admin.post("devices", {"name": "other"})
        with tether.Client(server.url, device_id=me["id"], device_secret=me["secret"]) as device:
            token = device.get_auth().token

        def change() -> None:
            admin.patch(f"devices/{other['id']}", {"name": "renamed"})
            admin.patch(f"devices/{me['id']}", {"name": "me too"})
            admin.post("users", {"username": "carol", "password": "carol-password"})
            admin.post("apps", {"name": "hidden"})

        heard = asyncio.run(events_heard(server, token, change))
    assert [(e["type"], e["id"]) for e in heard] == [("device", me["id"])]


def _concurrently(url: str, bodies: list[dict[str, Any]], **client: Any) -> list[httpx.Response]:
    async def main() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=url, timeout=60, **client) as http:
            return await asyncio.gather(*(http.post(f"{API}/auth/token", json=b) for b in bodies))

    return asyncio.run(main())


def test_the_sign_in_limit_holds_under_concurrency(server: RunningServer, tenant: Tenant) -> None:
    wrong = grant(tenant, "wrong-password")
    answers = _concurrently(server.url, [wrong] * 100)
    statuses = sorted(r.status_code for r in answers)
    assert statuses == [401] * 5 + [429] * 95
    assert all(int(r.headers["Retry-After"]) >= 1 for r in answers if r.status_code == 429)
    right_last = _concurrently(server.url, [wrong] * 39 + [grant(tenant)])
    assert {r.status_code for r in right_last} == {429}


def test_the_sign_in_limit_holds_per_client_address(server: RunningServer, tenant: Tenant) -> None:
    """Guesses spread over many accounts from one address (127.0.0.2, so the suite's other
    sign-ins from 127.0.0.1 keep their budget) stop at the address's budget (100)."""
    bodies = [grant(tenant, "wrong-password", f"nobody-{i}") for i in range(110)]
    transport = httpx.AsyncHTTPTransport(local_address="127.0.0.2")
    answers = _concurrently(server.url, bodies, transport=transport)
    statuses = sorted(r.status_code for r in answers)
    assert statuses == [401] * 100 + [429] * 10


def _from(address: str) -> httpx.Client:
    """A client whose requests come from `address` (a loopback alias), so limits counted here
    leave the suite's other callers on 127.0.0.1 their budget."""
    return httpx.Client(transport=httpx.HTTPTransport(local_address=address), timeout=30)


def test_strangers_guessing_a_device_secret_never_lock_the_device_out(
    server: RunningServer, tenant: Tenant
) -> None:
    with tenant.client() as admin:
        device = admin.post("devices", {"name": "guessed"})
    wrong = httpx.BasicAuth(device["id"], "wrong-secret")
    right = httpx.BasicAuth(device["id"], device["secret"])
    token = {"grant_type": "device", "device_id": device["id"], "device_secret": "wrong"}
    with _from("127.0.0.3") as stranger, _from("127.0.0.7") as another:
        basic = [stranger.get(f"{server.url}{API}/devices", auth=wrong) for _ in range(7)]
        posts = [another.post(f"{server.url}{API}/auth/token", json=token) for _ in range(7)]
        also = stranger.post(f"{server.url}{API}/auth/token", json=token)
    assert [r.status_code for r in basic] == [401] * 5 + [429] * 2
    assert [r.status_code for r in posts] == [401] * 5 + [429] * 2
    assert also.status_code == 429, "Basic and sign-in share the budget of a secret and address"
    assert httpx.get(f"{server.url}{API}/devices/{device['id']}", auth=right).status_code == 200
    with tether.Client(server.url, device_id=device["id"], device_secret=device["secret"]) as real:
        assert real.get(f"devices/{device['id']}")["name"] == "guessed"


def test_pairing_codes_cannot_be_guessed_flooded_or_claimed_by_another_organization(
    server: RunningServer, tenant: Tenant, make_tenant: Any
) -> None:
    url = f"{server.url}{API}/pairing"
    named = {"name": "kiosk", "organization": tenant.organization}
    with _from("127.0.0.4") as device:
        started = device.post(url, json=named).json()
    with make_tenant().client() as stranger:
        guesses = [started["user_code"]] + [f"BCDF{n:04d}" for n in range(6)]
        headers = bearer(stranger.get_auth().token)
        misses = [
            httpx.post(f"{url}/approve", json={"user_code": code}, headers=headers).status_code
            for code in guesses
        ]
    assert misses == [404] * 5 + [429] * 2
    with tenant.client() as admin:
        assert admin.post("pairing/approve", {"user_code": started["user_code"]})["name"] == "kiosk"
        with _from("127.0.0.5") as flood, _from("127.0.0.6") as more:
            answers = [flood.post(url, json=named).status_code for _ in range(105)]
            answers += [more.post(url, json=named).status_code for _ in range(20)]
        assert answers == [201] * 100 + [429] * 5 + [201] * 20
        listed = admin.get("pairing/pending")
        assert len(listed) == 99, "the organization lists 100 requests a window, kiosk's included"


def test_only_admins_change_what_an_app_may_do(server: RunningServer, tenant: Tenant) -> None:
    with tenant.client() as admin:
        app = admin.post("apps", {"name": "reader", "read_only": True})
        _, member = user(admin, tenant, "member")
        device = admin.post("devices", {"name": "d"})
    for credentials in ({"device_id": device["id"], "device_secret": device["secret"]}, member):
        with (
            tether.Client(server.url, **credentials) as caller,
            pytest.raises(tether.PermissionDeniedError),
        ):
            caller.patch(f"apps/{app['id']}", {"read_only": False})
    with tenant.client() as admin:
        assert admin.get(f"apps/{app['id']}")["read_only"] is True
    with tether.Client(server.url, app_id=app["id"], api_key=app["secret"]) as reader:
        with pytest.raises(tether.PermissionDeniedError) as refused:
            reader.post("things", {"name": "t"})
        assert refused.value.code == "read_only"


def test_a_device_acts_on_itself_only(server: RunningServer, tenant: Tenant) -> None:
    with tenant.client() as admin:
        project = admin.projects.create("p")
        me = admin.post(f"projects/{project.id}/devices", {"name": "me"})
        other = admin.post(f"projects/{project.id}/devices", {"name": "other"})
        admin.post(
            f"devices/{other['id']}/telemetry",
            {"batch": "b", "entries": [{"ts": time.time(), "values": {"t": 1}}]},
        )
    mine = f"projects/{project.id}/devices"
    with tether.Client(server.url, device_id=me["id"], device_secret=me["secret"]) as device:
        for method, path, body in (
            ("DELETE", f"projects/{project.id}", None),
            ("PATCH", f"{mine}/{other['id']}", {"name": "pwned"}),
            ("GET", f"{mine}/{other['id']}/telemetry/latest", None),
            ("GET", "/api/v1/users", None),
            ("GET", f"projects/{project.id}/apps", None),
            ("POST", f"{mine}/{me['id']}/secret", None),
        ):
            with pytest.raises(tether.PermissionDeniedError):
                device.request(method, path, json=body)
        assert device.patch(f"{mine}/{me['id']}", {"document": {"v": 2}})["document"] == {"v": 2}
        device.post(
            f"{mine}/{me['id']}/telemetry",
            {"batch": "mine", "entries": [{"ts": time.time(), "values": {"t": 2}}]},
        )
        assert device.get(f"{mine}/{me['id']}/telemetry/latest")["values"]["t"]["value"] == 2
    with tenant.client() as admin:
        assert admin.projects.get(project.id).name == "p"
        assert admin.get(f"devices/{other['id']}")["name"] == "other"


def test_update_reports_and_checks_name_only_devices_in_scope(
    server: RunningServer, tenant: Tenant, make_tenant: Any
) -> None:
    with make_tenant().client() as stranger:
        foreign = stranger.post("devices", {"name": "theirs"})["id"]
    with tenant.client() as admin:
        admin.request("PUT", "packages/fw/versions/1.0.0", content=b"firmware")
        deployment = admin.post(
            "deployments",
            {"reference": "fw", "version": "1.0.0", "failure_threshold": 0.5, "min_reports": 3},
        )
        project = admin.projects.create("p")
        outside = admin.post("devices", {"name": "outside"})["id"]
        token = admin.post("tokens", {"name": "p", "project_id": project.id})["token"]
        report = {"reference": "fw", "version": "1.0.0", "state": "failed", "reason": "fake"}
        for device_id in (str(uuid.uuid4()), foreign, str(uuid.uuid4())):
            with pytest.raises(tether.NotFoundError):
                admin.post("updates/reports", report | {"device_id": device_id})
        assert admin.get(f"deployments/{deployment['id']}")["state"] == "active"
    with tether.Client(server.url, token=token) as scoped:
        base = f"projects/{project.id}/updates"
        with pytest.raises(tether.NotFoundError):
            scoped.post(f"{base}/check", {"installed": [], "device_id": outside})
        with pytest.raises(tether.NotFoundError):
            scoped.post(f"{base}/reports", report | {"device_id": outside})


def _token_for(server: RunningServer, **credentials: Any) -> tuple[str, str]:
    body = {"grant_type": "password"} | credentials
    answer = httpx.post(f"{server.url}{API}/auth/token", json=body).json()
    return answer["access_token"], answer["refresh_token"]


def _whoami(server: RunningServer, token: str) -> int:
    return httpx.get(f"{server.url}{API}/auth/whoami", headers=bearer(token)).status_code


def test_deleting_a_user_or_device_stops_its_tokens_at_once(
    server: RunningServer, tenant: Tenant
) -> None:
    with tenant.client() as admin:
        user_id, credentials = user(admin, tenant, "member")
        token, _ = _token_for(server, **credentials)
        device = admin.post("devices", {"name": "d"})
        with tether.Client(server.url, device_id=device["id"], device_secret=device["secret"]) as d:
            device_token = d.get_auth().token or ""
        assert _whoami(server, token) == _whoami(server, device_token) == 200
        admin.delete(f"users/{user_id}")
        admin.delete(f"devices/{device['id']}")
    assert _whoami(server, token) == 401
    assert (
        httpx.post(
            f"{server.url}{API}/tokens", json={"name": "x"}, headers=bearer(token)
        ).status_code
        == 401
    )
    assert _whoami(server, device_token) == 401


def test_logout_password_change_and_secret_rotation_stop_old_tokens(
    server: RunningServer, tenant: Tenant
) -> None:
    with tenant.client() as admin:
        _, credentials = user(admin, tenant, "viewer")
        device = admin.post("devices", {"name": "d"})
    access, refresh = _token_for(server, **credentials)
    httpx.post(f"{server.url}{API}/auth/logout", json={"refresh_token": refresh})
    assert _whoami(server, access) == 401
    access, _ = _token_for(server, **credentials)
    other_session, _ = _token_for(server, **credentials)
    changed = httpx.post(
        f"{server.url}{API}/auth/password",
        json={"current_password": credentials["password"], "new_password": "a-new-password"},
        headers=bearer(access),
    )
    assert changed.status_code == 204
    assert _whoami(server, access) == _whoami(server, other_session) == 401
    fresh, _ = _token_for(server, **(credentials | {"password": "a-new-password"}))
    assert _whoami(server, fresh) == 200
    with tether.Client(server.url, device_id=device["id"], device_secret=device["secret"]) as d:
        device_token = d.get_auth().token or ""
    with tenant.client() as admin:
        admin.post(f"devices/{device['id']}/secret")
    assert _whoami(server, device_token) == 401


def test_reusing_a_spent_refresh_token_revokes_its_whole_family(
    server: RunningServer, tenant: Tenant
) -> None:
    _, first = _token_for(server, **grant(tenant))
    url = f"{server.url}{API}/auth/token"
    rotated = httpx.post(url, json={"grant_type": "refresh_token", "refresh_token": first}).json()
    assert _whoami(server, rotated["access_token"]) == 200
    reuse = httpx.post(url, json={"grant_type": "refresh_token", "refresh_token": first})
    assert reuse.status_code == 401
    later = httpx.post(
        url, json={"grant_type": "refresh_token", "refresh_token": rotated["refresh_token"]}
    )
    assert later.status_code == 401
    assert _whoami(server, rotated["access_token"]) == 401


def test_a_revoked_token_closes_its_open_sockets(server: RunningServer, tenant: Tenant) -> None:
    with tenant.client() as admin:
        made = admin.post("tokens", {"name": "socket"})
    url = server.url.replace("http://", "ws://") + f"{API}/realtime"

    def revoke() -> None:
        with tenant.client() as admin:
            admin.delete(f"tokens/{made['id']}")

    code, took = closed_by(url, made["token"], revoke)
    assert code == REVOKED
    assert took < 1.0


def test_keys_at_rest_are_sealed_and_private(server: RunningServer, tenant: Tenant) -> None:
    with tenant.client() as admin:
        admin.post("packages/signing-key", {"generate": True})
        admin.request("PUT", "packages/fw/versions/1.0.0", content=b"firmware")
    data = Path(server.data)
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    if server.backend == "sqlite":
        assert stat.S_IMODE((data / "tether.db").stat().st_mode) == 0o600
    stored = asyncio.run(_stored_keys(server))
    assert len(stored) >= 2
    assert all(value.startswith("sealed:v1:") for value in stored)


async def _stored_keys(server: RunningServer) -> list[str]:
    """The token-signing key and the server-held package keys, as the database holds them."""
    settings = Settings.load({"data": server.data, "database_url": server.database_url}, environ={})
    engine = create_engine(settings.resolved_database_url)
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(sa.select(server_state.c.value))
            keys = await conn.execute(
                sa.select(update_keys.c.private_key).where(update_keys.c.private_key.is_not(None))
            )
            return [*rows.scalars(), *keys.scalars()]
    finally:
        await engine.dispose()


def test_the_master_key_file_is_made_once_for_its_owner(tmp_path: Path) -> None:
    data = tmp_path / "data"
    key = master_key(None, data)
    assert master_key(None, data) == key
    assert stat.S_IMODE((data / "master.key").stat().st_mode) == 0o600
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    assert master_key("configured", data) == "configured"


def test_sealed_secrets_open_only_under_their_key() -> None:
    sealed = Sealer("one key").seal("the signing key")
    assert "the signing key" not in sealed
    assert Sealer("one key").open(sealed) == "the signing key"
    assert Sealer("one key").open("stored before sealing") == "stored before sealing"
    with pytest.raises(SealError, match="TETHER_MASTER_KEY"):
        Sealer("another key").open(sealed)
