"""A realtime client outlives its server: killed with SIGKILL and started again, the client
reconnects, resubscribes and receives later broadcasts."""

from __future__ import annotations

import signal
import threading
from typing import Any

import pytest

import tether
from tests.conftest import OPERATOR, RunningServer, wait_for
from tests.faults.conftest import serve

pytestmark = pytest.mark.subprocess


def test_listeners_come_back_after_the_server_is_killed(
    server: RunningServer, killable: dict[str, Any]
) -> None:
    org, user, password = OPERATOR
    credentials = {"username": user, "password": password, "organization": org}
    with (
        tether.Client(killable["url"], **credentials) as listener_client,
        tether.Client(killable["url"], **credentials) as caster,
    ):
        listener = listener_client.get_channel("survivors").listen("ping")
        assert caster.get_channel("survivors").broadcast("ping", 1, timeout=0) == []
        assert listener.wait(timeout=10) is not None
        killable["process"].send_signal(signal.SIGKILL)
        killable["process"].wait(30)
        wait_for(lambda: not listener_client.is_connected, timeout=30, what="the drop noticed")
        killable["process"] = serve(killable["port"], killable["data"], server.database_url)
        wait_for(lambda: listener_client.is_connected, timeout=60, what="the reconnect")
        got: list[Any] = []

        def receive() -> None:
            broadcast = listener.wait(timeout=30)
            if broadcast is not None:
                got.append(broadcast.payload)
                broadcast.respond("back")

        thread = threading.Thread(target=receive)
        thread.start()
        responses: list[Any] = []
        wait_for(
            lambda: bool(
                responses.extend(caster.get_channel("survivors").broadcast("ping", 2, timeout=1))
                or responses
            ),
            timeout=60,
            what="a broadcast answered after the restart",
        )
        thread.join(30)
        assert got == [2]
        assert responses == ["back"]


def test_clients_move_to_the_other_server_when_theirs_dies(
    server: RunningServer, killable: dict[str, Any], tmp_path: Any
) -> None:
    from tests.conftest import free_port

    other_port = free_port()
    other = serve(other_port, killable["data"], server.database_url)
    other_url = f"http://127.0.0.1:{other_port}"
    org, user, password = OPERATOR
    credentials = {"username": user, "password": password, "organization": org}
    try:
        with (
            tether.Client(killable["url"], failover_urls=[other_url], **credentials) as player,
            tether.Client(other_url, **credentials) as caster,
        ):
            listener = player.get_channel("moving").listen("ping")
            killable["process"].send_signal(signal.SIGKILL)
            killable["process"].wait(30)
            got: list[Any] = []

            def delivered() -> bool:
                caster.get_channel("moving").broadcast("ping", "hello", timeout=0)
                broadcast = listener.wait(timeout=0.5)
                if broadcast is not None:
                    got.append(broadcast.payload)
                return bool(got)

            wait_for(delivered, timeout=60, what="the listener to come back on the other server")
            assert got == ["hello"]
    finally:
        other.terminate()
        other.wait(30)
