"""Hostile input gets a clear 4xx naming what is wrong, on both back ends, and changes nothing:
deep JSON, out-of-range query parameters, NUL in text, bodies that are not JSON or absent."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect

from tests.conftest import RunningServer, Tenant

API = "/api/v1"


@pytest.fixture
def http(server: RunningServer, tenant: Tenant) -> Any:
    with tenant.client() as admin:
        token = admin.get_auth().token
    with httpx.Client(
        base_url=f"{server.url}{API}", headers={"Authorization": f"Bearer {token}"}
    ) as client:
        yield client


def nested(depth: int) -> bytes:
    return b'{"name": "deep", "document": ' + b'{"a":' * depth + b"1" + b"}" * depth + b"}"


def test_json_nests_at_most_64_levels_everywhere(server: RunningServer, http: Any) -> None:
    assert http.post("devices", content=nested(63)).status_code == 201
    for depth in (65, 990, 5000):
        answer = http.post("devices", content=nested(depth))
        assert (answer.status_code, answer.json()["code"]) == (400, "too_deep"), depth
    flat = b"[" * 5000 + b"]" * 5000
    for path in ("auth/token", "pairing"):
        answer = httpx.post(f"{server.url}{API}/{path}", content=flat)
        assert (answer.status_code, answer.json()["code"]) == (400, "too_deep"), path
    answer = http.put("data/g/k", content=flat)
    assert (answer.status_code, answer.json()["code"]) == (400, "too_deep")
    assert http.get("devices", params={"name": "deep"}).json()["total"] == 1


@pytest.mark.parametrize(
    ("query", "parameter"),
    [
        ("since=inf", "since"),
        ("since=-inf", "since"),
        ("since=nan", "since"),
        ("since=1e300", "since"),
        ("until=1e19", "until"),
        ("since=9999999999999", "since"),
        ("since=-1", "since"),
        ("every=1e300", "every"),
        ("every=1e13", "every"),
        ("every=0", "every"),
        ("after=%C2%B2:1", "after"),
        ("after=99999999999999999999:1", "after"),
        ("every=60&after=%C2%B2", "after"),
        ("limit=99999999999999999999999", "limit"),
        ("limit=%C2%B2", "limit"),
    ],
)
def test_telemetry_query_parameters_are_typed_and_bounded(
    http: Any, query: str, parameter: str
) -> None:
    device = http.post("devices", json={"name": "d"}).json()["id"]
    answer = http.get(f"devices/{device}/telemetry?field=t&{query}")
    assert answer.status_code == 422, answer.text
    problem = answer.json()
    assert problem["code"] == "invalid_parameter"
    assert problem["errors"][0]["key"] == parameter


def test_no_text_holds_nul_on_either_back_end(server: RunningServer, http: Any) -> None:
    refused = [
        http.post("devices", content=b'{"name": "a\\u0000b"}'),
        http.post("devices", json={"name": "ok", "document": {"k\u0000": 1}}),
        http.get("devices", params={"name": "a\u0000b"}),
        http.put("data/g%00/k", json=1),
        http.put("data/g/k", content=b'{"v": "x\\u0000"}'),
        http.post("tokens", json={"name": "t\u0000"}),
        httpx.post(
            f"{server.url}{API}/auth/token",
            json={
                "grant_type": "password",
                "username": "a\u0000",
                "password": "p",
                "organization": "o",
            },
        ),
        httpx.post(f"{server.url}{API}/pairing", json={"name": "n\u0000"}),
    ]
    for answer in refused:
        assert answer.status_code == 422, (answer.request.url, answer.text)
        assert answer.json()["code"] == "invalid_text"
    assert "document.k" in refused[1].json()["detail"]
    assert http.get("devices").json()["total"] == 0
    assert http.get("data").json()["total"] == 0


def test_bad_bodies_get_one_code_each(server: RunningServer, http: Any) -> None:
    for body in (b'{"name": "x"', b"{nope", b'{"name": "x"} trailing'):
        answer = http.post("devices", content=body, headers={"Content-Type": "application/json"})
        assert (answer.status_code, answer.json()["code"]) == (400, "malformed"), body
    empty = http.post("devices")
    assert (empty.status_code, empty.json()["code"]) == (400, "missing_body")
    assert "'data'" not in empty.text


def test_validation_errors_do_not_change_once_the_spec_is_served(
    server: RunningServer, http: Any
) -> None:
    before = http.post("devices", json={"name": 5}).json()
    httpx.get(f"{server.url}{API}/openapi.json").raise_for_status()
    after = http.post("devices", json={"name": 5}).json()
    assert before == after
    assert [e["key"] for e in after["errors"]] == ["name"]


def test_a_deep_realtime_frame_gets_an_error_frame_and_the_socket_stays(
    server: RunningServer, http: Any
) -> None:
    token = http.headers["Authorization"]
    url = server.url.replace("http://", "ws://") + f"{API}/realtime"

    async def main() -> list[dict[str, Any]]:
        async with connect(url, additional_headers={"Authorization": token}) as ws:
            await ws.send('{"op": "subscribe", "payload": ' + "[" * 5000 + "]" * 5000 + "}")
            first = json.loads(await asyncio.wait_for(ws.recv(), 10))
            await ws.send(json.dumps({"op": "subscribe", "id": 2, "channel": "still-here"}))
            second = json.loads(await asyncio.wait_for(ws.recv(), 10))
            return [first, second]

    first, second = asyncio.run(main())
    assert (first["op"], first["code"]) == ("error", "too_deep")
    assert second == {"op": "ack", "id": 2}


def test_each_route_accepts_exactly_the_query_parameters_it_declares(
    server: RunningServer, http: Any, make_tenant: Any
) -> None:
    """Every operation that declares query parameters in the OpenAPI document refuses one it
    did not declare (422 unknown_parameter), and none of those it declares is called unknown."""
    from tests.server.world import fill, populate

    with make_tenant().client() as admin:
        ids = populate(admin)
        token = admin.get_auth().token
    document = httpx.get(f"{server.url}{API}/openapi.json").json()
    sample = {
        "since": "0",
        "until": "1",
        "every": "60",
        "agg": "avg",
        "limit": "5",
        "state": "active",
        "hash": "blake2",
        "rollsum": "rabinkarp",
        "block_len": "0",
        "basis": "0" * 64,
    }
    checked = 0
    for path, item in document["paths"].items():
        operation = item.get("get")
        declared = [
            p["name"] for p in (operation or {}).get("parameters", []) if p["in"] == "query"
        ]
        if not declared:
            continue
        url = server.url + fill(path, ids)
        headers = {"Authorization": f"Bearer {token}"}
        unknown = httpx.get(url, params={"undeclared": "1"}, headers=headers)
        assert unknown.json().get("code") == "unknown_parameter", (path, unknown.text)
        params = {name: sample.get(name, "x") for name in declared if name != "after"}
        known = httpx.get(url, params=params, headers=headers)
        assert known.status_code < 500, (path, known.text)
        assert "unknown_parameter" not in known.text, (path, known.text)
        checked += 1
    assert checked >= 20
