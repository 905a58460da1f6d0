"""Resource events to realtime sockets: every event of a process's bus, and the movements
it implies for the listeners of a location or a project, to the sockets here that asked for
them and, through the backplane, to those on the other processes."""

from __future__ import annotations

from typing import TYPE_CHECKING

import msgspec

from tether.server.realtime.events import Event, EventBus

if TYPE_CHECKING:
    from tether.server.realtime.hub import Hub


def movements(event: Event) -> list[Event]:
    """The per-dataset events a resource change implies: a device or thing whose document holds
    a position (`latitude`, `longitude`) moved, as far as the listeners of its location and of
    its project are concerned (`location.<id>:moved`, `project.<id>:moved`)."""
    if event.type not in ("device", "thing") or event.action not in ("created", "updated"):
        return []
    resource = event.document
    if isinstance(resource, msgspec.Struct):
        resource = msgspec.structs.asdict(resource)
    if not isinstance(resource, dict) or not isinstance(resource.get("document"), dict):
        return []
    latitude, longitude = (
        resource["document"].get("latitude"),
        resource["document"].get("longitude"),
    )
    if not all(
        isinstance(v, int | float) and not isinstance(v, bool) for v in (latitude, longitude)
    ):
        return []
    position = {"id": event.id, "kind": event.type, "latitude": latitude, "longitude": longitude}
    return [
        Event(event.org_id, f"{dataset}.{resource[field]}", "moved", event.id, position)
        for dataset, field in (("location", "location_id"), ("project", "project_id"))
        if resource.get(field)
    ]


async def forward_events(bus: EventBus, hub: Hub) -> None:
    """Carry every event of this process's bus, and the movements it implies, to the sockets
    that asked for it, here and, through the backplane, on the other processes."""
    async with bus.subscribe() as queue:
        while True:
            event = await queue.get()
            for each in (event, *movements(event)):
                hub.publish(each)
                hub.backplane.event(each)
