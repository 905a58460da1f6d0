"""The console's session cookie at the API: accepted for reads, for writes only with the
session's CSRF header, and on the realtime socket only from the same origin."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from tests.conftest import Tenant
from tether.server.identity.cookies import CSRF_HEADER, SESSION_COOKIE, csrf_of


@contextmanager
def signed_in(tenant: Tenant) -> Iterator[httpx.Client]:
    """An HTTP client holding a console session, signed in through the form."""
    with httpx.Client(base_url=tenant.url) as http:
        yield _sign_in(http, tenant)


def _sign_in(http: httpx.Client, tenant: Tenant) -> httpx.Client:
    page = http.get("/sign-in").text
    csrf = re.search(r'name="csrf" value="([^"]+)"', page)
    assert csrf is not None
    form = {
        "csrf": csrf[1],
        "organization": tenant.organization,
        "username": "admin",
        "password": tenant.password,
    }
    assert http.post("/sign-in", data=form).status_code == 303
    return http


def test_the_cookie_reads_and_writes_only_with_its_csrf_header(tenant: Tenant) -> None:
    with signed_in(tenant) as http:
        token = http.cookies[SESSION_COOKIE]
        assert http.get("/api/v1/auth/whoami").json()["name"] == "admin"
        refused = http.post("/api/v1/devices", json={"name": "forged"})
        assert refused.status_code == 401
        wrong = http.post("/api/v1/devices", json={"name": "x"}, headers={CSRF_HEADER: "nope"})
        assert wrong.status_code == 401
        made = http.post(
            "/api/v1/devices", json={"name": "mine"}, headers={CSRF_HEADER: csrf_of(token)}
        )
        assert made.status_code == 201
        assert [d["name"] for d in http.get("/api/v1/devices").json()["results"]] == ["mine"]


def test_the_realtime_socket_takes_the_cookie_from_the_same_origin_only(tenant: Tenant) -> None:
    with signed_in(tenant) as http:
        cookie = f"{SESSION_COOKIE}={http.cookies[SESSION_COOKIE]}"
    url = tenant.url.replace("http", "ws") + "/api/v1/realtime"
    host = tenant.url.split("//", 1)[1]

    async def open_with(origin: str) -> None:
        headers = {"Cookie": cookie, "Origin": origin}
        async with connect(url, additional_headers=headers) as ws:
            await ws.send(json.dumps({"op": "events", "id": 1, "types": ["device:*"]}))
            assert json.loads(await ws.recv())["op"] == "ack"

    asyncio.run(open_with(f"http://{host}"))
    with pytest.raises(InvalidStatus):
        asyncio.run(open_with("http://evil.example"))
