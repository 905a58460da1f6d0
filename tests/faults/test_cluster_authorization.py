"""Two server processes on one database: a revocation made on one bites on the other within a
second (HTTP and open sockets), and the sign-in budget is shared, not doubled."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import OPERATOR, RunningServer, free_port, wait_for
from tests.faults.conftest import serve
from tests.server.test_realtime import closed_by
from tether.server.realtime.hub import REVOKED

pytestmark = pytest.mark.subprocess


@pytest.fixture
def nodes(server: RunningServer, tmp_path: Path) -> Iterator[list[str]]:
    ports = [free_port(), free_port()]
    data = tmp_path / "data"
    processes = [serve(port, data, server.database_url) for port in ports]
    try:
        yield [f"http://127.0.0.1:{port}" for port in ports]
    finally:
        for process in processes:
            process.terminate()
            process.wait(30)


def _sign_in(url: str, **grant: str) -> dict[str, Any]:
    answer = httpx.post(f"{url}/api/v1/auth/token", json={"grant_type": "password"} | grant)
    assert answer.status_code == 200, answer.text
    return answer.json()  # type: ignore[no-any-return]


@pytest.fixture
def account(nodes: list[str]) -> dict[str, str]:
    """A new organization's admin, made through the first node."""
    org, user, password = OPERATOR
    operator = _sign_in(nodes[0], username=user, password=password, organization=org)
    mine = {
        "organization": f"org-{secrets.token_hex(4)}",
        "username": "admin",
        "password": secrets.token_urlsafe(12),
    }
    made = httpx.post(
        f"{nodes[0]}/api/v1/organizations",
        json={
            "name": mine["organization"],
            "admin": {"username": "admin", "password": mine["password"]},
        },
        headers={"Authorization": f"Bearer {operator['access_token']}"},
    )
    assert made.status_code == 201, made.text
    return mine


def _status(url: str, token: str) -> int:
    headers = {"Authorization": f"Bearer {token}"}
    return httpx.get(f"{url}/api/v1/auth/whoami", headers=headers).status_code


def test_a_logout_on_one_node_stops_the_token_on_the_other(
    nodes: list[str], account: dict[str, str]
) -> None:
    session = _sign_in(nodes[0], **account)
    assert _status(nodes[1], session["access_token"]) == 200
    httpx.post(f"{nodes[0]}/api/v1/auth/logout", json={"refresh_token": session["refresh_token"]})
    started = time.monotonic()
    wait_for(lambda: _status(nodes[1], session["access_token"]) == 401, timeout=5)
    assert time.monotonic() - started < 1.5


def test_a_token_revoked_on_one_node_closes_its_socket_on_the_other(
    nodes: list[str], account: dict[str, str]
) -> None:
    session = _sign_in(nodes[0], **account)
    headers = {"Authorization": f"Bearer {session['access_token']}"}
    made = httpx.post(f"{nodes[0]}/api/v1/tokens", json={"name": "s"}, headers=headers).json()
    url = nodes[1].replace("http://", "ws://") + "/api/v1/realtime"

    def revoke() -> None:
        httpx.delete(f"{nodes[0]}/api/v1/tokens/{made['id']}", headers=headers)

    code, took = closed_by(url, made["token"], revoke)
    assert code == REVOKED
    assert took < 1.5


def test_the_sign_in_budget_is_shared_by_the_nodes(
    nodes: list[str], account: dict[str, str]
) -> None:
    wrong = {"grant_type": "password", **account, "password": "wrong-password"}

    async def main() -> list[int]:
        async with httpx.AsyncClient(timeout=60) as http:
            answers = await asyncio.gather(
                *(http.post(f"{nodes[n % 2]}/api/v1/auth/token", json=wrong) for n in range(100))
            )
        return sorted(a.status_code for a in answers)

    assert asyncio.run(main()) == [401] * 5 + [429] * 95
