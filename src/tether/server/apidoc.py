"""The API as its OpenAPI document tells it, completed from what each route declares.

Litestar documents what it reads from handler signatures: path parameters and typed JSON
bodies. The rest is declared on each route (`opt=allow(..., query=(...))`, raw bodies by their
`request_max_body_size=None`) and added here, once, when the document is first served: every
query parameter with its type and bounds (`parameters.QUERY`, which the server enforces),
raw request bodies with their content type, every error answer as an RFC 9457 problem
(`application/problem+json`), and the bearer and basic security schemes.
"""

from __future__ import annotations

import re
from typing import Any

from litestar import Litestar, Request
from litestar.openapi.plugins import JsonRenderPlugin

from tether.server.parameters import parameter_of

_ERRORS = {
    "400": "Malformed: not JSON, nested too deeply, or no body where one is needed.",
    "401": "No credentials, or invalid, expired or revoked ones (a refused sign-in too).",
    "403": "The policy does not allow this (see docs/permissions.md).",
    "404": "No such object in the caller's scope.",
    "409": "Conflicts with the current state.",
    "413": "The body is larger than this route takes.",
    "422": "Invalid input: the `errors` name the fields.",
    "429": "Too many sign-in attempts: wait `Retry-After` seconds.",
}
_PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}
PROBLEM_SCHEMA = {
    "type": "object",
    "required": ["type", "title", "status", "detail", "code"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "code": {"type": "string"},
        "instance": {"type": "string"},
        "errors": {"type": "array", "items": {"type": "object"}},
        "retry_after": {"type": "integer"},
    },
}
_SECURITY_SCHEMES = {
    "bearer": {
        "type": "http",
        "scheme": "bearer",
        "description": "An access token from POST /api/v1/auth/token, or an API token (tth_…).",
    },
    "basic": {
        "type": "http",
        "scheme": "basic",
        "description": "A device's or app's id and secret, or an API token as the user name.",
    },
}


_BINARY = {"schema": {"type": "string", "format": "binary"}}
_BYTES = {"application/octet-stream": _BINARY}
_STORED_BYTES = {"application/octet-stream": _BINARY, "*/*": _BINARY}
"""Files and content are served with the media type they were stored with."""
_RANGE = {
    "name": "Range",
    "in": "header",
    "required": False,
    "description": "bytes=START-END or bytes=START-: only those bytes (206); resumes a download.",
    "schema": {"type": "string", "pattern": "^bytes=[0-9]*-[0-9]*$"},
}


def query_names(opt: dict[str, Any]) -> tuple[str, ...]:
    """The query parameters a route declared."""
    return tuple(opt.get("query", ()))


def complete(document: dict[str, Any], app: Litestar) -> dict[str, Any]:
    """`document` (Litestar's) with what the routes declared added to each operation."""
    components = document.setdefault("components", {})
    components.setdefault("schemas", {})["Problem"] = PROBLEM_SCHEMA
    components["securitySchemes"] = _SECURITY_SCHEMES
    named: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for route in app.routes:
        path = re.sub(r"\{(\w+):\w+\}", r"{\1}", route.path)
        item = document.get("paths", {}).get(path)
        if item is None:
            continue
        for handler in getattr(route, "route_handlers", []):
            for method in getattr(handler, "http_methods", ()):
                operation = item.get(method.lower())
                if operation is not None:
                    _complete(operation, dict(handler.opt), handler, path)
                    name = operation_id(path, handler.handler_name)
                    named.setdefault(name, []).append((path, operation))
    for name, sharing in named.items():
        for path, operation in sharing:
            operation["operationId"] = name if len(sharing) == 1 else _by_parameters(name, path)
    return document


_VERBS = {"remove": "delete"}
"""Handler words that read better under another name in an operation id."""


def operation_id(path: str, handler_name: str) -> str:
    """A name a generated client can use as a function name: the path's fixed segments, then
    the handler's words they do not already say (`devices_list`, `users_create`,
    `devices_telemetry_latest`); `project_` first for a project's own route."""
    parts = path.removeprefix("/api/v1/").split("/")
    project = parts[:2] == ["projects", "{project_id}"] and len(parts) > 2
    fixed = [p.replace("-", "_") for p in parts[2 if project else 0 :] if not p.startswith("{")]
    said = set(fixed) | {p.removesuffix("s") for p in fixed}
    words = [_VERBS.get(w, w) for w in handler_name.split("_") if w and w not in said]
    return ("project_" if project else "") + "_".join(fixed + words)


def _by_parameters(name: str, path: str) -> str:
    """Tells apart the operations one handler serves at several paths (`files_info` at
    /files/info and /files/info/{path}) by their path parameters."""
    parameters = re.findall(r"\{(\w+)\}", path.removeprefix("/api/v1/projects/{project_id}"))
    return f"{name}_by_{'_and_'.join(parameters)}" if parameters else name


def _complete(operation: dict[str, Any], opt: dict[str, Any], handler: Any, path: str) -> None:
    parameters = [p for p in operation.get("parameters", []) if p.get("in") != "query"]
    for name in query_names(opt):
        declared = parameter_of(opt, name)
        schema, description = declared.schema, declared.description
        parameter = {
            "name": name,
            "in": "query",
            "required": declared.required,
            "description": description,
            "schema": schema,
        }
        if name in opt.get("query_many", ()):
            parameter |= {
                "required": False,
                "schema": {"type": "array", "items": schema},
                "style": "form",
                "explode": True,
                "description": f"{description} Repeat it for several; none for all.",
            }
        parameters.append(parameter)
    ranged = opt.get("raw_response") == "ranged"
    if ranged:
        parameters.append(_RANGE)
    if parameters:
        operation["parameters"] = parameters
    raw = opt.get("raw_body")
    if raw:
        operation["requestBody"] = {
            "required": True,
            "content": {
                raw: {
                    "schema": {"type": "string", "format": "binary"}
                    if raw != "application/json"
                    else {}
                }
            },
        }
    if opt.get("raw_response"):
        answers = operation.setdefault("responses", {})
        answers["200"] = {"description": "The bytes.", "content": _BYTES}
        if ranged:
            answers["200"] = {
                "description": "The bytes, with the media type they were stored with (else "
                "application/octet-stream), the SHA-256 as ETag and X-Tether-Sha256, and "
                "Accept-Ranges.",
                "content": _STORED_BYTES,
            }
            answers["206"] = {
                "description": "The range asked for; Content-Range says which bytes of how many.",
                "content": _STORED_BYTES,
            }
            answers["416"] = {
                "description": "The range asked for is outside the bytes.",
                "content": {"application/problem+json": {"schema": _PROBLEM_REF}},
            }
    public = bool(opt.get("exclude_from_auth"))
    operation["security"] = [] if public else [{"bearer": []}, {"basic": []}]
    responses = operation.setdefault("responses", {})
    codes = ["400", "401", "413", "422"] if public else ["400", "401", "403", "413", "422"]
    if "{" in path or not public:
        codes.append("404")
    codes.append("409")
    codes.append("429")
    if path.endswith("/auth/token"):
        responses["428"] = {
            "description": "Pairing: the code is not approved yet; poll again.",
            "content": {"application/problem+json": {"schema": _PROBLEM_REF}},
        }
    for code in codes:
        responses[code] = {
            "description": _ERRORS[code],
            "content": {"application/problem+json": {"schema": _PROBLEM_REF}},
        }


class CompletedJsonRender(JsonRenderPlugin):
    """Serves `/api/v1/openapi.json` completed by `complete`, built once."""

    def __init__(self) -> None:
        super().__init__()
        self._completed: bytes | None = None

    def render(self, request: Request[Any, Any, Any], openapi_schema: dict[str, Any]) -> bytes:
        if self._completed is None:
            self._completed = super().render(request, complete(openapi_schema, request.app))
        return self._completed
