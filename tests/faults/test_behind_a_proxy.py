"""Behind a reverse proxy, the client address the sign-in limits count is the one the proxy
forwards, when the proxy is trusted (TETHER_FORWARDED_ALLOW_IPS), and never otherwise."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port
from tests.faults.conftest import serve

pytestmark = pytest.mark.subprocess


def attempt(url: str, forwarded_for: str) -> int:
    body = {"grant_type": "password", "username": "x", "password": "wrong", "organization": "o"}
    headers = {"X-Forwarded-For": forwarded_for}
    return httpx.post(f"{url}/api/v1/auth/token", json=body, headers=headers).status_code


@pytest.mark.parametrize(("trusted", "separate"), [("127.0.0.1", True), ("10.9.9.9", False)])
def test_sign_in_limits_count_the_forwarded_address_of_a_trusted_proxy(
    tmp_path: Path, trusted: str, separate: bool
) -> None:
    port = free_port()
    process = serve(
        port,
        tmp_path / "data",
        None,
        login_max_per_address="3",
        login_max_failures="100",
        forwarded_allow_ips=trusted,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        assert [attempt(url, "203.0.113.1") for _ in range(4)] == [401, 401, 401, 429]
        assert attempt(url, "203.0.113.2") == (401 if separate else 429)
    finally:
        process.terminate()
        process.wait(30)
