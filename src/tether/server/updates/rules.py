"""Deployment rules: which devices a deployment reaches, by their properties and a stable
percentage.

A deployment's rules are a list of conditions that must all hold, each on one property:
`{"property": "region", "equals": "eu"}`, `{"property": "region", "in": ["eu", "us"]}`,
`{"property": "firmware", "version": ">=1.2,<2"}`, `{"property": "beta", "exists": true}`.
A device's properties are its document's fields, then what it sent with the check, plus
`device_id` and `name`. The percentage picks devices by a hash of deployment and device id,
so raising it from 10 to 50 keeps the first 10% and adds to them.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable, Mapping
from typing import Annotated, Any

import msgspec

from tether._versions import in_range, parse_range
from tether.server.problems import invalid

Properties = Mapping[str, Any]
Test = Callable[[Properties], bool]

_Property = Annotated[str, msgspec.Meta(min_length=1, max_length=100)]
_OPERATORS = ("equals", "in", "version", "exists")


class Rule(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    property: _Property
    equals: Any = msgspec.UNSET
    in_: Annotated[list[Any], msgspec.Meta(max_length=1000)] | msgspec.UnsetType = msgspec.field(
        default=msgspec.UNSET, name="in"
    )
    version: Annotated[str, msgspec.Meta(max_length=200)] | msgspec.UnsetType = msgspec.UNSET
    exists: bool | msgspec.UnsetType = msgspec.UNSET


Rules = Annotated[list[Rule], msgspec.Meta(max_length=50)]


def check_rules(rules: list[Rule]) -> None:
    """422 `invalid_rule` unless each rule has exactly one valid operator."""
    for index, rule in enumerate(rules):
        given = [name for name in _OPERATORS if _value(rule, name) is not msgspec.UNSET]
        if len(given) != 1:
            raise invalid(
                f"Rule {index} must have exactly one of: {', '.join(_OPERATORS)}.", "invalid_rule"
            )
        if rule.version is not msgspec.UNSET:
            try:
                parse_range(rule.version)
            except ValueError as exc:
                raise invalid(f"Rule {index}: {exc}.", "invalid_rule") from None


def _value(rule: Rule, operator: str) -> Any:
    return rule.in_ if operator == "in" else getattr(rule, operator)


def _test(rule: Rule) -> Test:
    name = rule.property
    if rule.exists is not msgspec.UNSET:
        wanted = rule.exists
        return lambda props: (name in props) is wanted
    if rule.in_ is not msgspec.UNSET:
        choices = rule.in_
        return lambda props: name in props and props[name] in choices
    if rule.version is not msgspec.UNSET:
        comparisons = parse_range(rule.version)
        return lambda props: isinstance(props.get(name), str) and in_range(props[name], comparisons)
    equals = rule.equals
    return lambda props: name in props and props[name] == equals


_DECODE_RULES = msgspec.json.Decoder(list[Rule])


@functools.lru_cache(maxsize=4096)
def compile_rules(encoded: str) -> Test:
    """One test for a deployment's stored rules (cached: the check path runs it per device)."""
    tests = [_test(rule) for rule in _DECODE_RULES.decode(encoded)]
    return lambda props: all(test(props) for test in tests)


@functools.lru_cache(maxsize=4096)
def properties_of(encoded: str) -> frozenset[str]:
    """The properties a deployment's stored rules look at."""
    return frozenset(rule.property for rule in _DECODE_RULES.decode(encoded))


def in_rollout(deployment_id: str, device_id: str, percentage: float) -> bool:
    """Whether the device falls in the first `percentage` of the deployment's stable order."""
    if percentage >= 100:
        return True
    return _place(deployment_id, device_id) < round(percentage * 100)


@functools.lru_cache(maxsize=1 << 16)
def _place(deployment_id: str, device_id: str) -> int:
    """The device's place (0..9999) in the deployment's stable order: a fleet checks again and
    again, so each pair is hashed once."""
    digest = hashlib.sha256(f"{deployment_id}:{device_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % 10_000
