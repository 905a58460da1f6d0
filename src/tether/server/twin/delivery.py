"""The live part of twins: a device that asked on its socket gets one catch-up from the
desired version it applied last, then each change of desired as it is made (on any node);
its reported patches come back on the same socket.

Frames, from the device:

    {"op": "twin", "id": 1, "version": 7}     I applied desired up to 7; keep me current
    {"op": "twin_report", "id": 2, "reported": {...}, "report_id": "<its own id>"}

answered with `{"op": "ack", "id": n, "version": N}` and `{"op": "ack", "id": n, "versions":
{...}}`. To the device, the catch-up when it is behind, then each change of desired:

    {"op": "twin", "since": 7, "version": 9, "patch": {...}, "desired": {...}}
    {"op": "twin", "version": 10, "patch": {...}}

(`patch` takes version 7 to 9; `replace: true` instead, when version 7 is no longer kept:
take `desired` whole).

A device that sees a version other than the one after its own asks for a catch-up again.
"""

from __future__ import annotations

from typing import Any

from tether.server.identity.policy import decide
from tether.server.problems import Problem
from tether.server.realtime.events import Event
from tether.server.realtime.frames import Frame, FrameError, Socket
from tether.server.state import ServerState
from tether.server.twin import store


class TwinDelivery:
    """The twin area's part of the running server (`ServerState.areas["twin"]`)."""

    def __init__(self, state: ServerState) -> None:
        self.state = state
        self.hub = state.hub

    def start(self) -> None:
        self.hub.operations.update({"twin": self._follow, "twin_report": self._report})
        self.hub.hearing.append(self._heard)

    def changed(self, org_id: str, project_id: str | None, changes: list[store.Change]) -> None:
        """After a commit: announce each change; push desired changes to the device here."""
        for event in store.events_of(org_id, project_id, changes):
            self.state.bus.publish(event)
            self._push(event)

    def _heard(self, event: Event) -> None:
        if event.type == "twin":
            self._push(event)

    def _push(self, event: Event) -> None:
        document = event.document
        if not isinstance(document, dict) or document.get("section") != "desired":
            return
        frame = {"op": "twin", "version": document["version"], "patch": document["patch"]}
        for socket in self.hub.sockets_of(event.id):
            if "twin" in socket.takes:
                socket.offer(frame)

    async def _follow(self, socket: Socket, frame: Frame) -> dict[str, Any]:
        device_id = _device(socket, "read")
        socket.takes.add("twin")
        since = frame.version or 0
        if since < 0:
            raise FrameError("invalid", "version is the desired version applied last, 0 or more")
        async with self.state.reader.connect() as reads:
            caught = await store.catch_up(reads, device_id, since)
        if "patch" in caught or "replace" in caught:
            socket.offer({"op": "twin", "since": since, **caught})
        return {"op": "ack", "id": frame.id, "version": caught["version"]}

    async def _report(self, socket: Socket, frame: Frame) -> dict[str, Any]:
        device_id = _device(socket, "report")
        if not isinstance(frame.reported, dict):
            raise FrameError("invalid", "reported is a JSON object: a merge patch")
        report_id = frame.report_id
        if report_id is not None and not (isinstance(report_id, str) and 0 < len(report_id) <= 64):
            raise FrameError("invalid", "report_id is 1 to 64 characters")
        principal = socket.principal
        async with self.state.engine.begin() as conn:
            twin, changes = await store.change(
                conn,
                principal.org_id,
                principal.project_id,
                device_id,
                "reported",
                frame.reported,
                f"device:{device_id}",
                report_id=report_id,
            )
        self.changed(principal.org_id, twin.project_id, changes)
        return {"op": "ack", "id": frame.id, "versions": twin.versions}


def _device(socket: Socket, action: str) -> str:
    """The device this socket speaks for, if the policy lets it `action` its own twin."""
    try:
        decide(socket.principal, "twin", action, socket.principal.id, socket.path)
    except Problem as exc:
        raise FrameError("forbidden", "Only a device follows and reports its own twin.") from exc
    if socket.principal.type != "device":
        raise FrameError("forbidden", "Only a device follows and reports its own twin.")
    return socket.principal.id


def twin_of(state: ServerState) -> TwinDelivery:
    delivery: TwinDelivery = state.areas["twin"]
    return delivery
