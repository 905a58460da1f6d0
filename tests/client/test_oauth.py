"""OAuth 2.0 for registered apps on both back ends: the authorization code with PKCE, approved
as a person through the API the console's consent page calls, exchanged and refreshed by the
SDK (and by a plain form post, as OAuth libraries send it); read and write scopes; codes that
work once; every wrong piece refused."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

import tether
from tests.conftest import RunningServer, Tenant

CALLBACK = "http://127.0.0.1:8765/callback"


def asked(flow: tether.OAuthFlow) -> dict[str, str]:
    """The authorization request of `flow`, as the consent page passes it to the API."""
    query = parse_qs(urlsplit(flow.authorization_url).query)
    return {k: v[0] for k, v in query.items() if k != "state"}


def approve(person: tether.Client, flow: tether.OAuthFlow) -> str:
    """What the console does when the person allows: the URL the browser is sent back to."""
    answer = person.post("oauth/authorize", asked(flow) | {"state": flow.state})
    return str(answer["redirect_to"])


@pytest.fixture
def app(client: tether.Client) -> Any:
    return client.apps.create("Dashboard", {"redirect_uris": [CALLBACK]})


def test_an_app_acts_for_a_person_read_only_then_with_write(
    server: RunningServer, client: tether.Client, app: Any
) -> None:
    flow = tether.OAuthFlow(server.url, app.id, "http://127.0.0.1:9999/callback")
    assert flow.authorization_url.startswith(f"{server.url}/oauth/authorize?")
    consent = client.get("oauth/authorize", asked(flow))
    assert consent["client"] == {"id": app.id, "name": "Dashboard"}
    assert (consent["scope"], consent["read_only"]) == ("read", True)
    back = approve(client, flow)
    assert back.startswith("http://127.0.0.1:9999/callback?code=tta_")
    assert parse_qs(urlsplit(back).query)["state"] == [flow.state]
    client.devices.create("sensor")

    kept: list[tether.AuthPayload] = []
    with tether.Client(server.url, oauth=flow.grant(back), on_tokens=kept.append) as reader:
        assert [d.name for d in reader.devices.find()] == ["sensor"]
        me = reader.get("auth/whoami")
        assert (me["type"], me["name"], me["read_only"]) == ("user", "admin", True)
        with pytest.raises(tether.PermissionDeniedError):
            reader.devices.create("not allowed")
    assert kept
    assert str(kept[-1].refresh_token).startswith("ttr_")

    with tether.Client(
        server.url, oauth=tether.OAuthGrant(app.id, refresh_token=kept[-1].refresh_token)
    ) as again:
        assert again.get("auth/whoami")["read_only"] is True
        assert again.get_auth().refresh_token != kept[-1].refresh_token

    writer_flow = tether.OAuthFlow(server.url, app.id, CALLBACK, scope="write")
    grant = writer_flow.grant(approve(client, writer_flow))
    with tether.Client(server.url, oauth=grant) as writer:
        assert writer.get("auth/whoami").get("read_only", False) is False
        writer.devices.create("made by the app")
        client.apps.delete(app.id)
        with pytest.raises(tether.AuthenticationError):
            writer.devices.find()


def test_a_plain_oauth_client_posts_forms(
    server: RunningServer, client: tether.Client, app: Any
) -> None:
    flow = tether.OAuthFlow(server.url, app.id, CALLBACK, scope="write")
    code = parse_qs(urlsplit(approve(client, flow)).query)["code"][0]
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "code_verifier": flow.code_verifier,
        "redirect_uri": CALLBACK,
        "client_id": app.id,
    }
    tokens = httpx.post(f"{server.url}/api/v1/auth/token", data=form)
    assert tokens.status_code == 200, tokens.text
    body = tokens.json()
    assert (body["token_type"], body["expires_in"]) == ("bearer", 900)
    who = httpx.get(
        f"{server.url}/api/v1/auth/whoami",
        headers={"Authorization": f"Bearer {body['access_token']}"},
    )
    assert who.json()["name"] == "admin"
    refreshed = httpx.post(
        f"{server.url}/api/v1/auth/token",
        data={"grant_type": "refresh_token", "refresh_token": body["refresh_token"]},
    )
    assert refreshed.status_code == 200

    again = httpx.post(f"{server.url}/api/v1/auth/token", data=form)
    assert (again.status_code, again.json()["code"]) == (400, "invalid_grant")
    spent = httpx.post(
        f"{server.url}/api/v1/auth/token",
        data={"grant_type": "refresh_token", "refresh_token": refreshed.json()["refresh_token"]},
    )
    assert spent.status_code == 401, "a code used twice ends what it gave"


@pytest.mark.parametrize(
    "change",
    [
        {"code_verifier": "x" * 43},
        {"redirect_uri": "http://127.0.0.1:8765/other"},
        {"client_id": "00000000-0000-7000-8000-000000000000"},
        {"code": "tta_00000000000070008000000000000000.nope"},
    ],
)
def test_a_code_with_any_wrong_piece_is_refused(
    server: RunningServer, client: tether.Client, app: Any, change: dict[str, str]
) -> None:
    flow = tether.OAuthFlow(server.url, app.id, CALLBACK)
    grant = flow.grant(approve(client, flow))
    form = {
        "grant_type": "authorization_code",
        "code": grant.code,
        "code_verifier": grant.code_verifier,
        "redirect_uri": CALLBACK,
        "client_id": app.id,
    } | change
    refused = httpx.post(f"{server.url}/api/v1/auth/token", json=form)
    assert (refused.status_code, refused.json()["code"]) == (400, "invalid_grant")


def test_bad_authorization_requests_are_refused(
    server: RunningServer, client: tether.Client, app: Any, make_tenant: Any
) -> None:
    flow = tether.OAuthFlow(server.url, app.id, CALLBACK)
    good = asked(flow)
    cases = [
        ({"client_id": "nope"}, "invalid_client"),
        ({"redirect_uri": "https://evil.example/callback"}, "invalid_redirect_uri"),
        ({"redirect_uri": CALLBACK + "#x"}, "invalid_redirect_uri"),
        ({"redirect_uri": "http://127.0.0.1:8765/elsewhere"}, "invalid_redirect_uri"),
        ({"response_type": "token"}, "unsupported_response_type"),
        ({"code_challenge_method": "plain"}, "invalid_request"),
        ({"code_challenge": "short"}, "invalid_request"),
        ({"scope": "admin"}, "invalid_scope"),
    ]
    for change, code in cases:
        with pytest.raises(tether.BadRequestError) as refused:
            client.get("oauth/authorize", good | change)
        assert refused.value.code == code, change
        with pytest.raises(tether.BadRequestError):
            client.post("oauth/authorize", good | change)
    plain = client.apps.create("No OAuth")
    with pytest.raises(tether.BadRequestError, match="redirect_uris"):
        client.get("oauth/authorize", good | {"client_id": plain.id})
    with make_tenant().client() as stranger, pytest.raises(tether.BadRequestError) as refused:
        stranger.post("oauth/authorize", good)
    assert refused.value.code == "invalid_client"
    device = client.post("devices", {"name": "d"})
    with (
        tether.Client(server.url, device_id=device["id"], device_secret=device["secret"]) as dc,
        pytest.raises(tether.PermissionDeniedError),
    ):
        dc.post("oauth/authorize", good)


def test_the_flow_checks_what_comes_back(server: RunningServer, app: Any) -> None:
    flow = tether.OAuthFlow(server.url, app.id, CALLBACK)
    with pytest.raises(tether.AuthorizationError) as denied:
        flow.grant(f"{CALLBACK}?error=access_denied&state={flow.state}")
    assert denied.value.error == "access_denied"
    with pytest.raises(tether.AuthorizationError, match="state"):
        flow.grant(f"{CALLBACK}?code=tta_x.y&state=forged")
    assert flow.grant(f"?code=tta_x.y&state={flow.state}").code == "tta_x.y"
    with pytest.raises(ValueError, match="scope"):
        tether.OAuthFlow(server.url, app.id, CALLBACK, scope="everything")
    with pytest.raises(ValueError, match="refresh_token"):
        tether.OAuthGrant(app.id)


def test_read_only_tokens_cannot_approve_apps(
    tenant: Tenant, server: RunningServer, app: Any
) -> None:
    with tenant.client() as admin:
        token = admin.post("tokens", {"name": "ro", "read_only": True})["token"]
    flow = tether.OAuthFlow(server.url, app.id, CALLBACK)
    with tether.Client(server.url, token=token) as ro, pytest.raises(tether.PermissionDeniedError):
        ro.post("oauth/authorize", asked(flow))


def test_a_person_sees_and_stops_the_apps_acting_for_them(
    server: RunningServer, client: tether.Client, app: Any, make_tenant: Any
) -> None:
    flow = tether.OAuthFlow(server.url, app.id, CALLBACK)
    with tether.Client(server.url, oauth=flow.grant(approve(client, flow))) as on_behalf:
        on_behalf.devices.find()
        on_behalf.get_auth()
        listed = client.get("oauth/authorizations")
        assert [(a["client_id"], a["client_name"], a["read_only"]) for a in listed] == [
            (app.id, "Dashboard", True)
        ]
        client.post("users", {"username": "olga", "password": "olga-password-1"})
        with tether.Client(
            server.url,
            username="olga",
            password="olga-password-1",
            organization=client.auth.identity["organization"]["name"],
        ) as other:
            assert other.get("oauth/authorizations") == []
            with pytest.raises(tether.NotFoundError):
                other.delete(f"oauth/authorizations/{listed[0]['id']}")
        with make_tenant().client() as stranger, pytest.raises(tether.NotFoundError):
            stranger.delete(f"oauth/authorizations/{listed[0]['id']}")
        on_behalf.devices.find()
        client.delete(f"oauth/authorizations/{listed[0]['id']}")
        assert client.get("oauth/authorizations") == []
        with pytest.raises(tether.AuthenticationError):
            on_behalf.devices.find()


def test_an_apps_credentials_mint_nothing_that_outlives_the_app(
    server: RunningServer, client: tether.Client, app: Any
) -> None:
    flow = tether.OAuthFlow(server.url, app.id, CALLBACK, scope="write")
    other = client.apps.create("Other", {"redirect_uris": [CALLBACK]})
    other_flow = tether.OAuthFlow(server.url, other.id, CALLBACK, scope="write")
    with tether.Client(server.url, oauth=flow.grant(approve(client, flow))) as acting:
        assert acting.get("auth/whoami")["client_id"] == app.id
        acting.devices.create("an app may still run the fleet")
        refused = [
            lambda: acting.post("tokens", {"name": "forever"}),
            lambda: acting.post("oauth/authorize", asked(other_flow)),
            lambda: acting.post(
                "auth/password",
                {"current_password": "x", "new_password": "another-password-1"},
            ),
            lambda: acting.post("users", {"username": "mole", "password": "mole-password-1"}),
            lambda: acting.post("apps", {"name": "backdoor"}),
        ]
        for attempt in refused:
            with pytest.raises(tether.PermissionDeniedError, match="outlive the app"):
                attempt()
        refreshed = acting.get_auth().refresh_token
    assert refreshed is not None
    with (
        tether.Client(
            server.url, oauth=tether.OAuthGrant(app.id, refresh_token=refreshed)
        ) as again,
        pytest.raises(tether.PermissionDeniedError),
    ):
        again.post("tokens", {"name": "after a refresh"})


def test_a_read_only_app_gets_read_only_tokens_whatever_it_asks(
    server: RunningServer, client: tether.Client
) -> None:
    reader = client.post(
        "apps", {"name": "Viewer", "read_only": True, "document": {"redirect_uris": [CALLBACK]}}
    )
    flow = tether.OAuthFlow(server.url, reader["id"], CALLBACK, scope="write")
    assert client.get("oauth/authorize", asked(flow))["read_only"] is True
    with tether.Client(server.url, oauth=flow.grant(approve(client, flow))) as acting:
        assert acting.get("auth/whoami")["read_only"] is True
        with pytest.raises(tether.PermissionDeniedError):
            acting.devices.create("no")


@pytest.mark.parametrize(
    "redirect_uri",
    ["http://[::1/cb", "http://127.0.0.1:99999/callback", "http://127.0.0.1:abc/callback"],
)
def test_malformed_redirect_uris_are_refused_not_crashed_on(
    server: RunningServer, client: tether.Client, app: Any, redirect_uri: str
) -> None:
    good = asked(tether.OAuthFlow(server.url, app.id, CALLBACK))
    for call in (client.get, client.post):
        with pytest.raises(tether.BadRequestError) as refused:
            call("oauth/authorize", good | {"redirect_uri": redirect_uri})
        assert refused.value.code == "invalid_redirect_uri"


def test_a_code_no_longer_exchanges_once_its_redirect_uri_is_removed(
    server: RunningServer, client: tether.Client, app: Any
) -> None:
    flow = tether.OAuthFlow(server.url, app.id, CALLBACK)
    grant = flow.grant(approve(client, flow))
    client.patch(f"apps/{app.id}", {"document": {"redirect_uris": ["http://127.0.0.1/other"]}})
    form = {
        "grant_type": "authorization_code",
        "code": grant.code,
        "code_verifier": grant.code_verifier,
        "redirect_uri": CALLBACK,
        "client_id": app.id,
    }
    refused = httpx.post(f"{server.url}/api/v1/auth/token", json=form)
    assert (refused.status_code, refused.json()["code"]) == (400, "invalid_grant")
