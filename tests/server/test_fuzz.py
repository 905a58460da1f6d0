"""Schemathesis against a live server on both back ends: requests generated from the server's
own OpenAPI document, with real ids in every path (so they reach past 404s), must never get a
5xx nor an answer the document does not describe.

FUZZ_EXAMPLES sets the examples per operation (default 10, which keeps CI short; raise it by
hand for a deeper run)."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings

from tests.conftest import RunningServer, Tenant
from tests.server.world import populate

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "10"))
CHECKS = [
    schemathesis.checks.not_a_server_error,
    schemathesis.checks.status_code_conformance,
    schemathesis.checks.content_type_conformance,
    schemathesis.checks.response_schema_conformance,
    schemathesis.checks.response_headers_conformance,
    schemathesis.checks.negative_data_rejection,
]
"""No 5xx, and every answer as the document describes it; requests the document calls
invalid are refused. (Positive-data acceptance is left out: the document cannot say that a
grant needs the fields of its type, so it calls some refused requests valid.)"""


@pytest.fixture
def fuzzed(server: RunningServer, make_tenant: Callable[[], Tenant]) -> dict[str, Any]:
    """A tenant holding one object of every kind, and its admin's token."""
    with make_tenant().client() as admin:
        return {"ids": populate(admin), "token": admin.get_auth().token}


@pytest.fixture
def api_schema(server: RunningServer, fuzzed: dict[str, Any]) -> Any:
    """The server's OpenAPI document with each path parameter pinned to a real id."""
    document = httpx.get(f"{server.url}/api/v1/openapi.json").json()
    for path, item in document["paths"].items():
        for operation in item.values():
            for parameter in operation.get("parameters", []) if isinstance(operation, dict) else []:
                if parameter["in"] == "path":
                    parameter["schema"] = {"enum": [_real(path, parameter["name"], fuzzed["ids"])]}
    schema = schemathesis.openapi.from_dict(document)
    schema.config.update(base_url=server.url)
    return schema


def _real(path: str, name: str, ids: dict[str, str]) -> str:
    if name == "id":
        return ids[path.split("/{id}")[0].rsplit("/", 1)[1]]
    return ids[name]


def test_generated_requests_get_described_answers(api_schema: Any, fuzzed: dict[str, Any]) -> None:
    headers = {"Authorization": f"Bearer {fuzzed['token']}"}
    failed: dict[str, str] = {}
    operations = 0
    for found in api_schema.get_all_operations():
        operation = found.ok()
        operations += 1

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            phases=[Phase.explicit, Phase.generate],
            derandomize=True,
            database=None,
        )
        def call(case: Any) -> None:
            case.call_and_validate(headers=headers, checks=CHECKS)

        try:
            call()
        except (Exception, BaseExceptionGroup) as exc:  # each reported below, by operation
            failed[operation.label] = f"{type(exc).__name__}: {str(exc)[:500]}"
    print(f"fuzzed {operations} operations x {EXAMPLES} examples; {len(failed)} failed")
    assert not failed, "\n\n".join(f"{k}: {v}" for k, v in failed.items())
