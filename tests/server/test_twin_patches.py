"""The twin's pure rules: RFC 7396's own examples for merge patches, and the patch between two
documents that, applied, gives the second one."""

from __future__ import annotations

from typing import Any

import pytest

from tether.server.twin.patches import delta, difference, leaves, merge

RFC_7396_EXAMPLES = [
    ({"a": "b"}, {"a": "c"}, {"a": "c"}),
    ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
    ({"a": "b"}, {"a": None}, {}),
    ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
    ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
    ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
    ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
    ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
    (["a", "b"], ["c", "d"], ["c", "d"]),
    ({"a": "b"}, ["c"], ["c"]),
    ({"a": "foo"}, None, None),
    ({"a": "foo"}, "bar", "bar"),
    ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
    ([1, 2], {"a": "b", "c": None}, {"a": "b"}),
    ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
]


@pytest.mark.parametrize(("target", "patch", "result"), RFC_7396_EXAMPLES)
def test_merge_follows_rfc_7396_appendix_a(target: Any, patch: Any, result: Any) -> None:
    assert merge(target, patch) == result


PAIRS = [
    ({}, {"a": 1}),
    ({"a": 1}, {}),
    ({"a": {"b": 1, "c": 2}}, {"a": {"b": 1}}),
    ({"a": {"b": 1}}, {"a": 5}),
    ({"a": 5}, {"a": {"b": 1}}),
    ({"a": {"b": {}}}, {"a": {}}),
    ({"a": [1, 2]}, {"a": [2, 1]}),
    ({"x": {"y": {"z": 1}}, "k": "v"}, {"x": {"y": {"z": 2, "w": 0}}}),
]


@pytest.mark.parametrize(("old", "new"), PAIRS)
def test_the_difference_applied_to_the_old_gives_the_new(
    old: dict[str, Any], new: dict[str, Any]
) -> None:
    assert merge(old, difference(old, new)) == new


def test_the_delta_is_what_desired_asks_that_reported_does_not_say() -> None:
    desired = {"fan": {"speed": 3, "mode": "auto"}, "led": "on", "fw": "2.1"}
    reported = {"fan": {"speed": 3, "mode": "eco"}, "led": "on", "uptime": 7}
    assert delta(desired, reported) == {"fan": {"mode": "auto"}, "fw": "2.1"}
    assert delta(reported, reported) == {}
    assert sorted(leaves(delta(desired, reported))) == ["fan.mode", "fw"]
