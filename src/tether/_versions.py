"""Semantic versions and version ranges, the same on the SDK and the server.

A version is semver (`1.4.2`, `2.0.0-rc.1`); a missing minor or patch counts as 0, so `1.4`
is `1.4.0`. A range is comparisons joined by commas, all of which must hold:
`>=1.2.0,<2.0.0`.
"""

from __future__ import annotations

import functools
import re

from semver import Version

_COMPARISON = re.compile(r"^\s*(>=|<=|==|!=|>|<)\s*(\S+)\s*$")


@functools.lru_cache(maxsize=4096)
def parse_version(text: str) -> Version:
    """The semver version `text` names; ValueError if it is not one."""
    try:
        return Version.parse(text.strip(), optional_minor_and_patch=True)
    except (ValueError, TypeError):
        raise ValueError(f"{text!r} is not a semantic version (like 1.4.2)") from None


def canonical_version(text: str) -> str:
    return str(parse_version(text))


def parse_range(text: str) -> list[tuple[str, Version]]:
    """The comparisons of a range like `>=1.2,<2`; ValueError if it is malformed."""
    comparisons = []
    for part in text.split(","):
        match = _COMPARISON.match(part)
        if match is None:
            raise ValueError(f"{text!r} is not a version range (comparisons like >=1.2.0,<2.0.0)")
        comparisons.append((match.group(1), parse_version(match.group(2))))
    return comparisons


def in_range(version: str, comparisons: list[tuple[str, Version]]) -> bool:
    """Whether `version` satisfies every comparison; False when it is not a version at all."""
    try:
        v = parse_version(version)
    except ValueError:
        return False
    tests = {
        ">=": v.__ge__,
        "<=": v.__le__,
        "==": v.__eq__,
        "!=": v.__ne__,
        ">": v.__gt__,
        "<": v.__lt__,
    }
    return all(tests[op](other) for op, other in comparisons)
