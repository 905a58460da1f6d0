"""The rules every input obeys, in one place: JSON bodies and frames, text, and the typed,
bounded query parameters (times, intervals, counts, cursors).

- JSON nests at most `MAX_JSON_DEPTH` levels; deeper is 400 `too_deep`, not a crash.
- Invalid JSON is 400 `malformed`; a route that needs a body and got none is 400 `missing_body`.
- Text never holds NUL (U+0000), on either back end: 422 `invalid_text`, naming the field.
  SQLite would store it and PostgreSQL cannot, so one rule for both refuses it everywhere.
- Query times are Unix seconds or ISO 8601 between 1970 and 9999; intervals and counts are
  finite and bounded; cursors are what the endpoint gave. Each refusal names the parameter.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import math
import re
from typing import Any
from urllib.parse import parse_qsl

import msgspec
from litestar import Request
from litestar.middleware import ASGIMiddleware
from litestar.types import ASGIApp, Receive, Scope, Send

from tether.server.problems import Problem

FORM = "application/x-www-form-urlencoded"
MAX_JSON_DEPTH = 64
MAX_JSON_BODY = 1024 * 1024
"""The largest JSON body of an ordinary route (a resource, a token, a deployment...)."""
SIGN_IN_BODY = 16 * 1024
"""The largest body of the routes anyone may call unauthenticated (sign-in, pairing)."""
TELEMETRY_BODY = 8 * 1024 * 1024
"""The largest telemetry push (its point count is bounded apart)."""
MAX_TIME = 253_402_300_799
"""9999-12-31T23:59:59Z in Unix seconds: the last moment a query may name."""
_STRINGS = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[{]}")
_PARENTHESES = bytes.maketrans(b"[{]}", b"(())")


def too_deep_json(raw: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether the JSON text `raw` nests deeper than `limit`, found without decoding it: the
    brackets alone, their innermost pairs removed one level per pass. Brackets inside strings
    are set aside only when the quick count says too deep, so the common case stays cheap."""
    if raw.count(b"[") + raw.count(b"{") <= limit:
        return False
    if not _deeper(raw.translate(_PARENTHESES, _NOT_BRACKETS), limit):
        return False
    return _deeper(_STRINGS.sub(b'""', raw).translate(_PARENTHESES, _NOT_BRACKETS), limit)


def _deeper(brackets: bytes, limit: int) -> bool:
    for _ in range(limit):
        shorter = brackets.replace(b"()", b"")
        if not shorter or len(shorter) == len(brackets):
            return False
        brackets = shorter
    return True


def too_deep() -> Problem:
    return Problem(400, f"JSON may nest at most {MAX_JSON_DEPTH} levels.", code="too_deep")


def decode_json(raw: bytes, what: str = "The body", type: Any = Any) -> Any:
    """`raw` decoded (as `type`, when given), or a 400/422 problem that says what is wrong."""
    if too_deep_json(raw):
        raise too_deep()
    try:
        value = msgspec.json.decode(raw, type=type)
        if b"\\u0000" in raw:
            check_text(value if type is Any else msgspec.json.decode(raw))
    except RecursionError:
        raise too_deep() from None
    except msgspec.ValidationError as exc:
        raise Problem(400, f"{what} is not valid: {exc}.", code="malformed") from None
    except msgspec.DecodeError as exc:
        raise Problem(400, f"{what} is not valid JSON: {exc}.", code="malformed") from None
    return value


def check_text(value: Any, where: str = "") -> None:
    """Refuse NUL anywhere in `value`'s strings (keys included), naming where it is."""
    if isinstance(value, str):
        if "\x00" in value:
            raise nul_in(where or "the body")
    elif isinstance(value, dict):
        for key, item in value.items():
            path = f"{where}.{key}" if where else str(key)
            check_text(key, path)
            check_text(item, path)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            check_text(item, f"{where}[{index}]")


def nul_in(where: str) -> Problem:
    return Problem(
        422,
        f"{where} holds a NUL character (U+0000), which no text may hold.",
        code="invalid_text",
        extra={"errors": [{"key": where, "message": "NUL (U+0000) is not allowed in text"}]},
    )


class RefuseNul(ASGIMiddleware):
    """No NUL in a request's path or query string (`%00`): refused before any handler."""

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        if "\x00" in scope.get("path", "") or b"%00" in scope.get("query_string", b""):
            where = "the path" if "\x00" in scope.get("path", "") else "the query string"
            raise nul_in(where)
        await next_app(scope, receive, send)


async def read_bounded(
    request: Request[Any, Any, Any], limit: int, gate: asyncio.Semaphore
) -> bytes:
    """The body of a route that takes large values (data items, feed entries), refused with 413
    as soon as it passes `limit`; at most as many such bodies are held at once as `gate`
    allows, so concurrent large bodies cannot drive memory up without bound."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large(limit)
    async with gate:
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise too_large(limit)
            chunks.append(chunk)
        return b"".join(chunks)


def too_large(limit: int) -> Problem:
    return Problem(413, f"The body may be at most {limit} bytes.", code="too_large")


class TetherRequest(Request[Any, Any, Any]):
    """Litestar's request, with JSON bodies decoded by the rules above. A route that declares
    `opt={"form_body": True}` (the token endpoint, which OAuth clients post forms to) also
    takes an `application/x-www-form-urlencoded` body, as the object of its fields."""

    async def body(self) -> bytes:
        """The body; a 400 when it is empty and the handler needs a JSON `data`."""
        raw = await super().body()
        if not raw:
            data = self.route_handler.parsed_fn_signature.parameters.get("data")
            if data is not None and not data.is_optional:
                raise Problem(400, "This request needs a JSON body.", code="missing_body")
        return raw

    async def json(self) -> Any:
        raw = await self.body()
        if self.route_handler.opt.get("form_body") and self.content_type[0] == FORM:
            fields = parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True)
            check_text([value for pair in fields for value in pair])
            return dict(fields)
        return decode_json(raw or b"null")


# -- Query parameters


def query_time(name: str, raw: str | None) -> int | None:
    """A time as Unix seconds or ISO 8601, as microseconds since the epoch."""
    if raw is None:
        return None
    try:
        seconds = float(raw)
    except ValueError:
        try:
            moment = dt.datetime.fromisoformat(raw.replace("Z", "+00:00"))
        except ValueError:
            raise invalid_parameter(name, "must be Unix seconds or an ISO 8601 time") from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=dt.UTC)
        seconds = moment.timestamp()
    if not (math.isfinite(seconds) and 0 <= seconds <= MAX_TIME):
        raise invalid_parameter(name, "must be a time between 1970 and 9999")
    return round(seconds * 1_000_000)


def query_number(name: str, raw: str | None, low: float, high: float) -> float | None:
    """A finite number between `low` and `high`."""
    if raw is None:
        return None
    try:
        number = float(raw)
    except ValueError:
        raise invalid_parameter(name, "must be a number") from None
    if not (math.isfinite(number) and low <= number <= high):
        raise invalid_parameter(name, f"must be between {low:g} and {high:g}")
    return number


def query_int(name: str, raw: str | None, default: int, low: int, high: int) -> int:
    """A whole number between `low` and `high` (`default` when absent)."""
    if raw is None:
        return default
    if not (raw.isascii() and raw.lstrip("-").isdigit() and len(raw) <= 20):
        raise invalid_parameter(name, "must be a whole number")
    number = int(raw)
    if not low <= number <= high:
        raise invalid_parameter(name, f"must be between {low} and {high}")
    return number


def query_members(name: str, params: Any, shape: str, example: str) -> list[tuple[str, str]]:
    """A map-shaped query parameter as (member, value) pairs, in either spelling: one
    parameter per member (`name[member]=value`, OpenAPI's deepObject, what the SDK and the
    console send) or the whole map as one JSON object (`name={"member": value}`, what generated
    clients send). A JSON value that is not a string is taken as its JSON text (7 as "7").
    `shape` says what a member is (`a field: document[FIELD]=VALUE`) in the error."""
    refusal = f"takes {shape}, or a JSON object {example}"
    pairs: list[tuple[str, str]] = []
    for key, value in params.items():
        if key == name:
            try:
                members = msgspec.json.decode(value)
            except msgspec.DecodeError:
                members = None
            if not isinstance(members, dict) or any(
                isinstance(v, dict | list) for v in members.values()
            ):
                raise invalid_parameter(name, refusal)
            pairs += [
                (str(k), v if isinstance(v, str) else msgspec.json.encode(v).decode())
                for k, v in members.items()
            ]
        elif key.startswith(f"{name}[") and key.endswith("]"):
            pairs.append((key[len(name) + 1 : -1], value))
        elif key.startswith(f"{name}["):
            raise invalid_parameter(key, refusal)
    return pairs


def cursor_numbers(name: str, raw: str, parts: int) -> list[int]:
    """A cursor made of `parts` non-negative 64-bit numbers joined by ':'."""
    pieces = raw.split(":")
    if len(pieces) != parts or not all(
        p.isascii() and p.isdigit() and len(p) <= 19 and int(p) < 2**63 for p in pieces
    ):
        raise invalid_parameter(name, "is not a cursor this endpoint gave")
    return [int(p) for p in pieces]


def invalid_parameter(name: str, what: str) -> Problem:
    return Problem(
        422,
        f"{name} {what}.",
        code="invalid_parameter",
        extra={"errors": [{"key": name, "source": "query", "message": what}]},
    )
