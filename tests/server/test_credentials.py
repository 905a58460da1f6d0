"""Access tokens: the verified-token memory never outlives a token or accepts a forged one."""

from __future__ import annotations

import dataclasses
import datetime as dt

from tests.conftest import wait_for
from tether.server.identity.credentials import AccessTokens, Principal

ALICE = Principal(type="user", id="u1", org_id="o1", name="alice", read_only=True)


def _who(principal: Principal | None) -> Principal | None:
    """The identity a token carries, without the moment it was issued."""
    return principal and dataclasses.replace(principal, issued_at=0.0)


def test_a_remembered_token_still_expires() -> None:
    tokens = AccessTokens("k" * 48, ttl=1)
    token, _ = tokens.issue(ALICE, dt.datetime.now(dt.UTC))
    assert _who(tokens.verify(token)) == ALICE
    assert _who(tokens.verify(token)) == ALICE
    wait_for(lambda: tokens.verify(token) is None, timeout=5, what="token expiry")
    assert tokens.verify(token) is None


def test_tampered_and_foreign_tokens_are_refused_even_after_a_good_one() -> None:
    tokens = AccessTokens("k" * 48, ttl=60)
    token, _ = tokens.issue(ALICE, dt.datetime.now(dt.UTC))
    assert _who(tokens.verify(token)) == ALICE
    head, body, signature = token.split(".")
    flipped = signature[:-2] + ("A" if signature[-2] != "A" else "B") + signature[-1]
    assert tokens.verify(f"{head}.{body}.{flipped}") is None
    other, _ = AccessTokens("x" * 48, ttl=60).issue(ALICE, dt.datetime.now(dt.UTC))
    assert tokens.verify(other) is None


def test_the_memory_is_bounded() -> None:
    tokens = AccessTokens("k" * 48, ttl=60, remembered=3)
    now = dt.datetime.now(dt.UTC)
    issued = [tokens.issue(ALICE, now)[0] for _ in range(10)]
    for token in issued:
        assert _who(tokens.verify(token)) == ALICE
    assert len(tokens._verified) == 3
    assert all(_who(tokens.verify(token)) == ALICE for token in issued)
