"""The SDK's own logic against `httpx.MockTransport`: retries and `Retry-After`, token
refresh (once for many concurrent requests), and the mapping of problem documents to the
exception tree. The server is scripted here; every other client test runs a real one."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

import tether

URL = "http://tether.test"
pytestmark = pytest.mark.anyio


def tokens(n: int, lifetime: float = 900) -> dict[str, Any]:
    """A token answer numbered `n`, expiring in `lifetime` seconds."""
    expires = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=lifetime)
    return {
        "access_token": f"access-{n}",
        "refresh_token": f"refresh-{n}",
        "token_type": "Bearer",
        "expires_in": int(lifetime),
        "expires_at": expires.isoformat(),
        "identity": {"type": "user", "id": "u1", "name": "admin", "organization": {}},
    }


def problem(status: int, code: str, **headers: str) -> httpx.Response:
    body = {"type": "about:blank", "title": code, "status": status, "detail": code, "code": code}
    return httpx.Response(
        status, json=body, headers={"Content-Type": "application/problem+json", **headers}
    )


class Server:
    """A scripted server: sign-in issues numbered tokens, `/api/v1/thing` answers per
    `script`, and every request is recorded."""

    def __init__(self, thing: Callable[[httpx.Request], httpx.Response]) -> None:
        self.thing = thing
        self.requests: list[httpx.Request] = []
        self.grants: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        with self._lock:
            self.requests.append(request)
            if request.url.path == "/api/v1/auth/token":
                grant = json.loads(request.content)
                self.grants.append(grant)
                answer = tokens(len(self.grants))
            else:
                return self.thing(request)
        time.sleep(0.02)
        return httpx.Response(200, json=answer)

    async def handle_async(self, request: httpx.Request) -> httpx.Response:
        """The same, answering sign-ins after a pause in which other requests may run."""
        if request.url.path == "/api/v1/auth/token":
            grant = json.loads(request.content)
            self.grants.append(grant)
            answer = tokens(len(self.grants))
            await asyncio.sleep(0.02)
            return httpx.Response(200, json=answer)
        self.requests.append(request)
        return self.thing(request)


def client(server: Server, **kwargs: Any) -> tether.Client:
    options: dict[str, Any] = {
        "username": "admin",
        "password": "pw",
        "organization": "main",
        "retries": tether.Retries(backoff=0.001),
    }
    return tether.Client(URL, transport=httpx.MockTransport(server), **options | kwargs)


def test_a_throttled_answer_is_retried_after_what_retry_after_says() -> None:
    answers = [problem(503, "busy", **{"Retry-After": "0"}), httpx.Response(200, json={"ok": 1})]
    server = Server(lambda request: answers.pop(0))
    with client(server) as c:
        assert c.get("thing") == {"ok": 1}
    assert [r.url.path for r in server.requests].count("/api/v1/thing") == 2


def test_retries_stop_at_their_total_and_raise_the_last_answer() -> None:
    server = Server(lambda request: problem(429, "slow_down", **{"Retry-After": "0"}))
    retries = tether.Retries(total=2, backoff=0.001)
    with client(server, retries=retries) as c, pytest.raises(tether.RateLimitError) as caught:
        c.get("thing")
    assert caught.value.code == "slow_down"
    assert [r.url.path for r in server.requests].count("/api/v1/thing") == 3


def test_a_retry_after_past_the_limit_is_not_waited_for() -> None:
    server = Server(lambda request: problem(503, "maintenance", **{"Retry-After": "3600"}))
    with client(server) as c, pytest.raises(tether.ServerError):
        c.get("thing")
    assert [r.url.path for r in server.requests].count("/api/v1/thing") == 1


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (400, tether.BadRequestError),
        (401, tether.AuthenticationError),
        (403, tether.PermissionDeniedError),
        (404, tether.NotFoundError),
        (409, tether.ConflictError),
        (422, tether.ValidationError),
        (500, tether.ServerError),
    ],
)
def test_problem_documents_map_to_the_exception_tree(
    status: int, error: type[tether.APIError]
) -> None:
    server = Server(lambda request: problem(status, f"code_{status}"))
    with client(server, token="tth_static") as c, pytest.raises(error) as caught:
        c.get("thing")
    assert caught.value.status == status
    assert caught.value.code == f"code_{status}"
    assert isinstance(caught.value, tether.TetherError)


def test_a_refused_token_is_renewed_once_then_the_request_repeated() -> None:
    def thing(request: httpx.Request) -> httpx.Response:
        if request.headers["Authorization"] == "Bearer access-1":
            return problem(401, "unauthenticated")
        return httpx.Response(200, json={"ok": 1})

    server = Server(thing)
    with client(server) as c:
        assert c.get("thing") == {"ok": 1}
    assert [g["grant_type"] for g in server.grants] == ["password", "refresh_token"]
    assert server.grants[1]["refresh_token"] == "refresh-1"


async def test_concurrent_requests_with_an_expired_token_refresh_it_once() -> None:
    """A refresh token is spent when used; two concurrent refreshes would present it twice,
    which the server treats as theft and answers by revoking the sign-in."""
    server = Server(lambda request: httpx.Response(200, json={"ok": 1}))
    async with tether.AsyncClient(
        URL,
        username="admin",
        password="pw",
        organization="main",
        transport=httpx.MockTransport(server.handle_async),
    ) as c:
        assert await c.get("thing") == {"ok": 1}
        c._session.expires_at = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
        answers = await asyncio.gather(*(c.get("thing") for _ in range(20)))
    assert answers == [{"ok": 1}] * 20
    assert [g["grant_type"] for g in server.grants] == ["password", "refresh_token"]


def test_threads_sharing_a_client_with_an_expired_token_refresh_it_once() -> None:
    server = Server(lambda request: httpx.Response(200, json={"ok": 1}))
    with client(server) as c:
        c.get("thing")
        c._session.expires_at = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
        answers: list[Any] = []
        workers = [
            threading.Thread(target=lambda: answers.append(c.get("thing"))) for _ in range(8)
        ]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(10)
    assert answers == [{"ok": 1}] * 8
    assert [g["grant_type"] for g in server.grants] == ["password", "refresh_token"]


def test_a_network_failure_is_a_tether_error_and_idempotent_requests_retry() -> None:
    calls = []

    def thing(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/v1/auth/whoami":
            return httpx.Response(200, json={"type": "user", "id": "u1", "name": "admin"})
        calls.append(request.method)
        raise httpx.ConnectError("refused", request=request)

    with client(Server(thing), token="tth_static") as c:
        with pytest.raises(tether.NetworkError):
            c.get("thing")
        assert calls == ["GET"] * 4
        calls.clear()
        with pytest.raises(tether.NetworkError):
            c.post("thing", {"a": 1})
        assert calls == ["POST"]


def test_a_folder_given_as_a_file_is_a_local_file_error(tmp_path: Path) -> None:
    server = Server(lambda request: httpx.Response(200, json={}))
    with client(server, token="tth_static") as c:
        with pytest.raises(tether.LocalFileError) as caught:
            c.files.put(tmp_path, "/x")
        assert isinstance(caught.value, OSError)
        assert str(tmp_path) in caught.value.message
        with pytest.raises(tether.LocalFileError, match="No such file or folder"):
            c.files.put(tmp_path / "missing.bin", "/x")


def test_params_that_are_not_a_mapping_are_a_configuration_error() -> None:
    server = Server(lambda request: httpx.Response(200, json={}))
    with client(server, token="tth_static") as c, pytest.raises(tether.ConfigurationError):
        c.get("thing", params=["a", "b"])  # type: ignore[arg-type]


def test_a_task_still_running_when_the_wait_ends_is_a_task_timeout() -> None:
    def thing(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/v1/auth/whoami":
            return httpx.Response(200, json={"type": "user", "id": "u1", "name": "admin"})
        return httpx.Response(200, json={"id": "t1", "status": "running", "op": "remove"})

    with client(Server(thing), token="tth_static") as c:
        task = c.files.rm("/big")
        with pytest.raises(tether.TaskTimeoutError) as caught:
            task.wait(timeout=0.05)
    assert isinstance(caught.value, TimeoutError)
    assert isinstance(caught.value, tether.TaskError)


def test_a_requests_timeout_is_the_clients_unless_given_and_none_means_none() -> None:
    server = Server(lambda request: httpx.Response(200, json={"ok": 1}))
    with client(server, timeout=7.0) as c:
        c.get("thing")
        c.get("thing", timeout=2.5)
        c.get("thing", timeout=None)
        c.get("thing", timeout=tether.USE_CLIENT_DEFAULT)
    reads = [r.extensions["timeout"]["read"] for r in server.requests[-4:]]
    assert reads == [7.0, 2.5, None, 7.0]
