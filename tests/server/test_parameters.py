"""What the OpenAPI document says of each query parameter is what the server accepts: every
documented bound, crossed by one, is refused with a 422 naming the parameter (a 400 in OAuth's
words on the authorization request)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests.server.inprocess import settings_for, signed_in
from tether.server.parameters import QUERY, Parameter, check
from tether.server.problems import Problem

pytestmark = pytest.mark.anyio


def beyond(schema: dict[str, Any]) -> list[str]:
    """Values just outside what `schema` allows."""
    if "anyOf" in schema:
        return [v for option in schema["anyOf"] for v in beyond(option) if v != "x"][-1:]
    if schema.get("type") == "array":
        return beyond(schema["items"])
    values = []
    if "enum" in schema:
        values.append("not-" + str(schema["enum"][0]))
    if "pattern" in schema:
        values.append("!")
    if "maxLength" in schema:
        values.append("a" * (schema["maxLength"] + 1))
    if schema.get("minLength", 0) >= 1:
        values.append("")
    if schema.get("type") in ("integer", "number"):
        values += [repr(schema["maximum"] * 10 + 1), repr(schema["minimum"] - 1), "x"]
    return values


async def test_every_documented_bound_is_the_servers(tmp_path: Path) -> None:
    async with signed_in(settings_for(tmp_path)) as (http, _state):
        document = (await http.get("/api/v1/openapi.json")).json()
        tried = 0
        wrong = []
        for path, item in document["paths"].items():
            url = re.sub(r"\{\w+\}", "x", path)
            for method, operation in item.items():
                for parameter in operation.get("parameters", []):
                    if parameter["in"] != "query":
                        continue
                    name = parameter["name"]
                    for value in beyond(parameter["schema"]):
                        answer = await http.request(method, url, params={name: value})
                        tried += 1
                        problem = answer.json()
                        keys = [e.get("key") for e in problem.get("errors", [])]
                        named = (
                            keys == [name]
                            if answer.status_code == 422
                            else (answer.status_code == 400 and problem["detail"].startswith(name))
                        )
                        if not named:
                            wrong.append(f"{method} {path}?{name}={value[:20]}: {answer.text}")
        assert wrong == []
        assert tried > 100


async def test_undeclared_parameters_are_refused_by_name(tmp_path: Path) -> None:
    async with signed_in(settings_for(tmp_path)) as (http, _state):
        answer = await http.get("/api/v1/devices/x", params={"nmae": "a"})
        assert answer.status_code == 422
        assert answer.json()["code"] == "unknown_parameter"
        assert "nmae" in answer.json()["detail"]


def test_a_value_inside_its_bounds_passes() -> None:
    check([("name", "a" * 200), ("limit", "10000"), ("sort", "-name")], ("name", "sort"))
    check([("document[a.b]", "x" * 7000)], ("document",))


def test_the_refusal_says_the_rule() -> None:
    with pytest.raises(Problem) as refused:
        check([("username", "u" * 101)], ("username",))
    assert (refused.value.status_code, refused.value.detail) == (
        422,
        "username is 1 to 100 characters.",
    )
    assert all(isinstance(p, Parameter) for p in QUERY.values())
