"""Devices waiting to pair that named an organization: its fleet managers see them (never their
codes), nobody else does, and the device hears the same whether the organization exists."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

import tether
from tests.conftest import RunningServer, Tenant


def start(server: RunningServer, **body: str) -> dict[str, Any]:
    started = httpx.post(f"{server.url}/api/v1/pairing", json=body)
    assert started.status_code == 201, started.text
    return started.json()  # type: ignore[no-any-return]


def test_waiting_devices_are_seen_by_their_organization_only(
    server: RunningServer, tenant: Tenant, make_tenant: Any
) -> None:
    asked = start(server, name="kiosk", organization=tenant.organization)
    start(server, name="lost", organization="no such organization")
    start(server, name="anonymous")
    with tenant.client() as admin:
        waiting = admin.get("pairing/pending")
        assert [w["name"] for w in waiting] == ["kiosk"]
        assert waiting[0]["address"] == "127.0.0.1"
        assert set(waiting[0]) == {"id", "name", "address", "created_at", "expires_at"}
        assert asked["user_code"].replace("-", "") not in str(waiting)
        admin.post("users", {"username": "vera", "password": "vera-password-1", "role": "viewer"})
        with (
            tether.Client(
                server.url,
                username="vera",
                password="vera-password-1",
                organization=tenant.organization,
            ) as viewer,
            pytest.raises(tether.PermissionDeniedError),
        ):
            viewer.get("pairing/pending")
        with make_tenant().client() as stranger:
            assert stranger.get("pairing/pending") == []
        admin.post("pairing/approve", {"user_code": asked["user_code"]})
        assert admin.get("pairing/pending") == []
