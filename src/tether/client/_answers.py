"""An answer to a broadcast: what a subscriber sent back, and who it is."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Answer:
    """One subscriber's answer to a broadcast (`Channel.collect`). `responder` is how the
    server knows the socket that answered: its `type` (device, user, app), `id` and `name`;
    only a socket the broadcast reached may answer, once."""

    payload: Any
    responder: dict[str, Any]

    @classmethod
    def of(cls, sent: dict[str, Any]) -> Answer:
        return cls(sent.get("payload"), dict(sent.get("from") or {}))
