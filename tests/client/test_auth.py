"""Signing in, token refresh, revocation, rate limits, pairing and the credential chain."""

from __future__ import annotations

import datetime as dt
import threading
from pathlib import Path

import httpx
import pytest

import tether
from tests.conftest import RunningServer, Tenant
from tether.client._credentials import write_saved_logins


def test_user_login_exposes_the_auth_payload(client: tether.Client, tenant: Tenant) -> None:
    auth = client.get_auth()
    assert auth.token
    assert auth["token"] == auth.token
    assert auth.identity["name"] == "admin"
    assert auth.identity["organization"]["name"] == tenant.organization
    assert auth.expires_at is not None


def test_wrong_password_is_401_without_a_hint(tenant: Tenant) -> None:
    messages = set()
    for username in ("admin", "nobody"):
        with (
            tether.Client(
                tenant.url,
                username=username,
                password="wrong-password",
                organization=tenant.organization,
            ) as bad,
            pytest.raises(tether.AuthenticationError) as caught,
        ):
            bad.devices.find()
        messages.add(caught.value.message)
    assert messages == {"Invalid credentials."}


def test_repeated_failures_are_rate_limited(server: RunningServer, tenant: Tenant) -> None:
    body = {
        "grant_type": "password",
        "username": "admin",
        "password": "wrong-password",
        "organization": tenant.organization,
    }
    statuses = [
        httpx.post(f"{server.url}/api/v1/auth/token", json=body).status_code for _ in range(6)
    ]
    assert statuses == [401] * 5 + [429]
    limited = httpx.post(
        f"{server.url}/api/v1/auth/token", json=body | {"password": tenant.password}
    )
    assert limited.status_code == 429
    assert int(limited.headers["Retry-After"]) >= 1
    assert limited.json()["code"] == "rate_limited"


def test_expired_access_token_is_refreshed(client: tether.Client) -> None:
    first = client.get_auth().token
    client._session.expires_at = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
    client.devices.find()
    assert client.auth.token
    assert client.auth.token != first


def test_refresh_tokens_rotate_and_cannot_be_reused(server: RunningServer, tenant: Tenant) -> None:
    body = {
        "grant_type": "password",
        "username": "admin",
        "password": tenant.password,
        "organization": tenant.organization,
    }
    first = httpx.post(f"{server.url}/api/v1/auth/token", json=body).json()
    refresh = {"grant_type": "refresh_token", "refresh_token": first["refresh_token"]}
    second = httpx.post(f"{server.url}/api/v1/auth/token", json=refresh)
    assert second.status_code == 200
    assert second.json()["refresh_token"] != first["refresh_token"]
    again = httpx.post(f"{server.url}/api/v1/auth/token", json=refresh)
    assert again.status_code == 401


def test_api_tokens_revoke_and_expire(client: tether.Client, server: RunningServer) -> None:
    created = client.post("tokens", {"name": "ci"})
    assert created["token"].startswith("tth_")
    listed = client.get("tokens")["results"]
    assert [t["id"] for t in listed] == [created["id"]]
    assert "token" not in listed[0]
    with tether.Client(server.url, token=created["token"]) as by_token:
        assert by_token.whoami()["token_id"] == created["id"]
        client.delete(f"tokens/{created['id']}")
        with pytest.raises(tether.AuthenticationError):
            by_token.whoami()
    with pytest.raises(tether.ValidationError):
        client.post("tokens", {"name": "short", "expires_in": 1})


def test_http_basic_with_key_and_secret(tenant: Tenant, server: RunningServer) -> None:
    with tenant.client() as admin:
        app = admin.post("apps", {"name": "kiosk", "read_only": True})
    ok = httpx.get(f"{server.url}/api/v1/auth/whoami", auth=(app["id"], app["secret"]))
    assert ok.status_code == 200
    assert ok.json()["type"] == "app"
    assert ok.json()["read_only"] is True
    bad = httpx.get(f"{server.url}/api/v1/auth/whoami", auth=(app["id"], "wrong"))
    assert bad.status_code == 401
    with (
        tether.Client(server.url, app_id=app["id"], api_key=app["secret"]) as kiosk,
        pytest.raises(tether.PermissionDeniedError),
    ):
        kiosk.devices.create("nope")


def test_credentials_from_environment(tenant: Tenant, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TETHER_URL", tenant.url)
    monkeypatch.setenv("TETHER_USERNAME", tenant.username)
    monkeypatch.setenv("TETHER_PASSWORD", tenant.password)
    monkeypatch.setenv("TETHER_ORGANIZATION", tenant.organization)
    with tether.Client() as client:
        assert client.whoami()["organization"]["name"] == tenant.organization


def test_credentials_from_netrc(
    tenant: Tenant, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with tenant.client() as admin:
        device = admin.post("devices", {"name": "netrc"})
    netrc = Path.home() / ".netrc"
    netrc.write_text(f"machine 127.0.0.1 login {device['id']} password {device['secret']}\n")
    netrc.chmod(0o600)
    with tether.Client(tenant.url) as client:
        assert client.whoami()["id"] == device["id"]


def test_credentials_from_saved_login(tenant: Tenant) -> None:
    with tenant.client() as admin:
        token = admin.post("tokens", {"name": "saved"})["token"]
    write_saved_logins({"default": tenant.url, "servers": {tenant.url: {"token": token}}})
    with tether.Client() as client:
        assert client.url == tenant.url
        assert client.whoami()["name"] == "admin"


def test_arguments_win_over_environment(tenant: Tenant, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TETHER_TOKEN", "tth_wrong")
    with tenant.client() as client:
        assert client.whoami()["name"] == "admin"


def test_incomplete_credentials_are_a_configuration_error() -> None:
    with pytest.raises(tether.ConfigurationError):
        tether.Client("http://127.0.0.1:1", username="only-me")
    with pytest.raises(tether.ConfigurationError):
        tether.Client("ftp://example.com", token="x")


def test_closed_client_raises() -> None:
    client = tether.Client("http://127.0.0.1:1", token="x")
    client.close()
    with pytest.raises(tether.ClientClosedError):
        client.devices.find()
    assert isinstance(tether.ClientClosedError("x"), RuntimeError)


def test_unreachable_server_is_a_network_error() -> None:
    with (
        tether.Client(
            f"http://127.0.0.1:{_closed_port()}",
            token="x",
            retries=tether.Retries(total=1, backoff=0.01),
        ) as client,
        pytest.raises(tether.NetworkError),
    ):
        client.get("devices")


def _closed_port() -> int:
    from tests.conftest import free_port

    return free_port()


def test_device_pairing(tenant: Tenant, server: RunningServer) -> None:
    codes: list[tether.PairingCode] = []
    shown = threading.Event()

    def on_code(code: tether.PairingCode) -> None:
        codes.append(code)
        shown.set()

    def approve() -> None:
        assert shown.wait(30)
        with tenant.client() as admin:
            admin.post(
                "pairing/approve", {"user_code": codes[0].user_code.lower(), "name": "paired-one"}
            )

    approver = threading.Thread(target=approve)
    approver.start()
    with tether.Client(
        server.url, allow_pairing=True, on_pairing_code=on_code, environ={}
    ) as device:
        assert device.whoami()["type"] == "device"
        credentials = device.credentials
    approver.join()
    assert credentials.kind == "device"
    with tether.Client(
        server.url, device_id=credentials.device_id, device_secret=credentials.device_secret
    ) as again:
        assert again.whoami()["name"] == "paired-one"
    with tenant.client() as admin, pytest.raises(tether.NotFoundError):
        admin.post("pairing/approve", {"user_code": codes[0].user_code})
