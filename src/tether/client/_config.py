"""Typed client options with named defaults, and the pure retry decision."""

from __future__ import annotations

import email.utils
import random
import time
from dataclasses import dataclass, field

DEFAULT_TIMEOUT = 10.0
RETRY_STATUSES = frozenset({429, 503})
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})


@dataclass(frozen=True)
class Retries:
    """How the client retries: throttled answers (429/503) always, honouring `Retry-After`;
    connection failures only for idempotent methods. Waits grow exponentially with jitter."""

    total: int = 3
    backoff: float = 0.5
    max_backoff: float = 30.0
    max_retry_after: float = 120.0
    statuses: frozenset[int] = field(default=RETRY_STATUSES)


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds from a `Retry-After` header (delay-seconds or HTTP date); None if absent/bad."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def backoff_delay(retries: Retries, attempt: int, rng: random.Random | None = None) -> float:
    """Full-jitter exponential backoff for retry number `attempt` (0-based)."""
    ceiling = min(retries.max_backoff, retries.backoff * (2**attempt))
    return (rng or random).uniform(0, ceiling)


def retry_delay(
    retries: Retries,
    attempt: int,
    method: str,
    status: int | None = None,
    retry_after: str | None = None,
    network_error: bool = False,
) -> float | None:
    """Seconds to wait before retrying, or None to stop. Pure, so it is tested on its own."""
    if attempt >= retries.total:
        return None
    if network_error:
        return backoff_delay(retries, attempt) if method.upper() in IDEMPOTENT_METHODS else None
    if status not in retries.statuses:
        return None
    hinted = parse_retry_after(retry_after)
    if hinted is not None:
        return hinted if hinted <= retries.max_retry_after else None
    return backoff_delay(retries, attempt)
