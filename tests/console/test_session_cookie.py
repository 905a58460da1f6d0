"""The console's session cookie at the API: accepted for reads, for writes only with the
session's CSRF header, and on the realtime socket only from the same origin."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

import tether
from tests.conftest import Tenant
from tests.server.inprocess import settings_for
from tether.server.app import create_app
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


def test_pages_refuse_frames_and_sign_in_returns_only_to_console_pages(tenant: Tenant) -> None:
    with httpx.Client(base_url=tenant.url) as http:
        page = http.get("/sign-in")
        assert page.headers["X-Frame-Options"] == "DENY"
        assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]
        asked = http.get("/devices?online=true")
        assert asked.headers["location"] == "/sign-in?next=%2Fdevices%3Fonline%3Dtrue"
        for target, landing in (
            ("/devices?online=true", "/devices?online=true"),
            ("//evil.example/x", "/"),
            ("https://evil.example/", "/"),
            ("/\\evil.example", "/"),
            ("/\t/evil.example", "/"),
        ):
            http.cookies.clear()
            form_page = http.get("/sign-in", params={"next": target}).text
            csrf = re.search(r'name="csrf" value="([^"]+)"', form_page)
            assert csrf is not None
            form = {
                "csrf": csrf[1],
                "organization": tenant.organization,
                "username": "admin",
                "password": tenant.password,
                "next": target,
            }
            assert http.post("/sign-in", data=form).headers["location"] == landing


def test_an_app_is_not_approved_without_the_session_csrf_token(tenant: Tenant) -> None:
    callback = "http://127.0.0.1:8765/callback"
    with tenant.client() as admin:
        app = admin.apps.create("Sneaky", {"redirect_uris": [callback]})
    flow = tether.OAuthFlow(tenant.url, app.id, callback, scope="write")
    asked = dict(httpx.URL(flow.authorization_url).params)
    with signed_in(tenant) as http:
        consent = http.get("/oauth/authorize", params=asked)
        assert consent.status_code == 200
        assert consent.headers["X-Frame-Options"] == "DENY"
        refused = http.post("/oauth/authorize", data=asked | {"decision": "allow"})
        assert refused.status_code == 403
        assert "location" not in refused.headers
        token = re.search(r'name="csrf" value="([^"]+)"', consent.text)
        assert token is not None
        allowed = http.post(
            "/oauth/authorize", data=asked | {"decision": "allow", "csrf": token[1]}
        )
        assert allowed.status_code == 303
        assert allowed.headers["location"].startswith(f"{callback}?code=tta_")


@pytest.mark.anyio
async def test_over_https_a_planted_csrf_cookie_cannot_sign_a_victim_in(tmp_path: Path) -> None:
    """Login CSRF: over HTTPS the signed-out form's cookie is `__Host-` prefixed, which a
    sibling subdomain cannot set, so a planted plain cookie and its value in a forged form do
    not sign the victim in as the attacker."""
    app = create_app(settings_for(tmp_path))
    transport = httpx.ASGITransport(app=app)
    form = {"organization": "main", "username": "admin", "password": "admin-password"}
    async with (
        app.lifespan(),
        httpx.AsyncClient(transport=transport, base_url="https://testserver") as browser,
    ):
        page = await browser.get("/sign-in")
        assert "__Host-tether_csrf" in page.headers["set-cookie"]
        assert "Secure" in page.headers["set-cookie"]
        browser.cookies.clear()
        browser.cookies.set("tether_csrf", "planted", domain="testserver")
        forged = await browser.post("/sign-in", data=form | {"csrf": "planted"})
        assert forged.status_code == 403
        assert SESSION_COOKIE not in forged.cookies
        browser.cookies.clear()
        page = await browser.get("/sign-in")
        token = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert token is not None
        signed = await browser.post("/sign-in", data=form | {"csrf": token[1]})
        assert signed.status_code == 303, signed.text
