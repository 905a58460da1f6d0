"""Every query parameter of the API, declared once: its type with bounds (a msgspec
annotation) and what it does. `check` enforces the declarations on each request and
`apidoc` documents them from the same objects, so what the OpenAPI document promises is what
the server accepts (`tests/server/test_parameters.py` sends each documented bound)."""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, get_args, get_origin

import msgspec
from litestar.connection import ASGIConnection
from litestar.handlers import BaseRouteHandler
from msgspec import Meta

from tether.server.inputs import MAX_TIME, invalid_parameter
from tether.server.problems import Problem, invalid

Id = Annotated[str, Meta(min_length=1, max_length=36)]
Text = Annotated[str, Meta(min_length=1, max_length=200)]
Time = Annotated[str, Meta(min_length=1, max_length=40)]
"""A time as Unix seconds or ISO 8601 (the handler reads it with `inputs.query_time`)."""
_TIME = {
    "anyOf": [
        {"type": "number", "minimum": 0, "maximum": MAX_TIME},
        {"type": "string", "format": "date-time", "maxLength": 40},
    ]
}


Refusal = Callable[[str, str], Problem]
"""How a route words a refused parameter, given its name and the rule it broke: a 422
`invalid_parameter` unless the route speaks another protocol's errors (OAuth's)."""


@dataclass(frozen=True)
class Parameter:
    """One query parameter: the type a value must convert to and what it does. `schema`
    replaces the one derived from the type where the wire form says more (a time)."""

    type: Any
    description: str
    required: bool = False
    schema: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if not self.schema:
            object.__setattr__(self, "schema", _schema_of(self.type))

    def __deepcopy__(self, memo: dict[int, Any]) -> Parameter:
        """Itself: a declaration never changes (Litestar copies each route's `opt`)."""
        return self

    def check(self, name: str, value: str, refusal: Refusal = invalid_parameter) -> None:
        """The problem `refusal` makes (a 422 naming `name`) when `value` is not of this
        parameter's type and bounds."""
        try:
            msgspec.convert(value, self.type, strict=False)
        except msgspec.ValidationError:
            raise refusal(name, _rule(_schema_of(self.type))) from None


def _schema_of(declared: Any) -> dict[str, Any]:
    """The JSON schema of `type`; a choice keeps its declared order."""
    if get_origin(declared) is Literal:
        return {"type": "string", "enum": list(get_args(declared))}
    return msgspec.json.schema(declared)


def _rule(schema: dict[str, Any]) -> str:
    """What a value of `schema` must be, in the words of an error."""
    if "enum" in schema:
        return "is one of " + ", ".join(str(v) for v in schema["enum"])
    if "pattern" in schema:
        return f"must match {schema['pattern']}"
    if schema.get("type") == "string":
        low, high = schema.get("minLength", 0), schema.get("maxLength")
        return f"is {low} to {high} characters" if high else f"is at least {low} characters"
    whole = schema.get("type") == "integer"
    low, high = schema.get("minimum"), schema.get("maximum")
    kind = "a whole number" if whole else "a number"
    return f"must be {kind} between {low:g} and {high:g}" if high is not None else f"must be {kind}"


QUERY: dict[str, Parameter] = {
    "limit": Parameter(
        Annotated[int, Meta(ge=1, le=10_000)],
        "Page size (at most the server's TETHER_MAX_PAGE_SIZE; telemetry queries: 10,000).",
    ),
    "after": Parameter(
        Annotated[str, Meta(max_length=400)], "Cursor: take it from a page's `next`."
    ),
    "sort": Parameter(
        Literal["created", "-created", "name", "-name"],
        "Order: by creation (the default) or name; a leading - for descending.",
    ),
    "name": Parameter(Text, "Only the objects with this exact name."),
    "location_id": Parameter(Id, "Only those at this location."),
    "experience_id": Parameter(Id, "Only those in this experience."),
    "zone_id": Parameter(Id, "Only the members of this zone."),
    "member_id": Parameter(Id, "Only the zones this device or thing belongs to."),
    "parent_id": Parameter(Id, "Only the children of this content item."),
    "project_id": Parameter(Id, "Only those in this project."),
    "group": Parameter(Text, "Only the data items of this group."),
    "key": Parameter(Text, "Only the data items with this key."),
    "field": Parameter(Text, "The telemetry field.", required=True),
    "since": Parameter(Time, "From this time on (Unix seconds or ISO 8601).", schema=_TIME),
    "until": Parameter(Time, "Before this time (Unix seconds or ISO 8601).", schema=_TIME),
    "every": Parameter(
        Annotated[float, Meta(ge=0.001, le=MAX_TIME)],
        "Bucket width in seconds: one aggregate per bucket.",
    ),
    "agg": Parameter(Literal["avg", "min", "max", "count", "last"], "Aggregate."),
    "reference": Parameter(Text, "Only this package."),
    "state": Parameter(Literal["active", "paused", "aborted"], "Only this state."),
    "username": Parameter(Annotated[str, Meta(min_length=1, max_length=100)], "Only this user."),
    "variant": Parameter(Annotated[str, Meta(max_length=100)], "A variant of the content item."),
    "hash": Parameter(Literal["blake2", "md4"], "Signature strong hash."),
    "rollsum": Parameter(Literal["rabinkarp", "rollsum"], "Rolling checksum."),
    "block_len": Parameter(
        Annotated[int, Meta(ge=0, le=1 << 24)], "Signature block length in bytes (0: automatic)."
    ),
    "basis": Parameter(
        Annotated[str, Meta(pattern="^[0-9a-f]{64}$")],
        "SHA-256 of the version the delta was made against.",
        required=True,
    ),
    "filename": Parameter(Annotated[str, Meta(min_length=1, max_length=255)], "The file's name."),
    "grant": Parameter(
        Annotated[str, Meta(max_length=200)], "The grant the update check's URL carries."
    ),
    "online": Parameter(
        Literal["true", "false"],
        "Only devices seen in the last 5 minutes (true), or only the others (false).",
    ),
    "installed": Parameter(
        Annotated[str, Meta(max_length=2000)],
        'Only devices that said they run these versions (at most 3), as a JSON object {"firmware": '
        '"2.1.0"} (in their update check, or an installed report); the same filter may be '
        "spelled installed[REFERENCE]=VERSION, one parameter a package.",
    ),
    "type": Parameter(Text, "Events: only those of this type (device, deployment, report, ...)."),
    "device_id": Parameter(Id, "Events: only those about this device."),
    "object_id": Parameter(Text, "Events: only those about this object."),
    "response_type": Parameter(Literal["code"], "OAuth: code."),
    "client_id": Parameter(Id, "OAuth: the registered app's id."),
    "redirect_uri": Parameter(
        Annotated[str, Meta(max_length=2000)],
        "OAuth: one of the app's redirect_uris (a loopback one on any port).",
    ),
    "scope": Parameter(Literal["read", "write"], "OAuth: what the app asks for."),
    "code_challenge": Parameter(
        Annotated[str, Meta(pattern="^[A-Za-z0-9_-]{43}$")],
        "OAuth PKCE: base64url(SHA-256(code_verifier)), unpadded.",
    ),
    "code_challenge_method": Parameter(Literal["S256"], "OAuth PKCE: S256."),
    **{
        section: Parameter(
            Annotated[str, Meta(max_length=6000)],
            f"Devices whose twin's {section} holds these fields (at most 5), as a JSON object "
            f'{{"fan.speed": 3}} (or {section}[FIELD]=VALUE, one parameter a field), matched as '
            "document fields are.",
        )
        for section in ("desired", "reported", "tags")
    },
    "document": Parameter(
        Annotated[str, Meta(max_length=6000)],
        'Document fields to match (at most 5), as a JSON object {"subtype": "player", "a.b": 7} '
        "(a.b for a nested field): the field holds that string or, for a number, true, false or "
        "null, that value. The same filter may be spelled document[FIELD]=VALUE, one parameter "
        "a field.",
    ),
}
"""Every query parameter of the API, by name."""

PAGING = ("limit", "after")
"""What every list takes, declared or not."""


def parameter_of(opt: Mapping[str, Any], name: str) -> Parameter:
    """The declaration of query parameter `name` on a route: its own (`query_types`, where a
    name means something else there, like a command's `state`) or the API's."""
    own: Mapping[str, Parameter] = opt.get("query_types", {})
    return own.get(name) or QUERY[name]


def check(
    given: Iterable[tuple[str, str]],
    declared: Collection[str],
    refusal: Refusal = invalid_parameter,
    own: Mapping[str, Parameter] | None = None,
) -> None:
    """Refuse a parameter the route did not declare (so a typo is not a silent no-op) and a
    value outside its declaration's bounds, each with a 422 naming the parameter. A member of
    a map-shaped parameter (`document[subtype]`) is checked by the handler that reads it."""
    unknown: list[str] = []
    for name, value in given:
        if name in declared or name in PAGING:
            ((own or {}).get(name) or QUERY[name]).check(name, value, refusal)
        elif object_of(name) not in declared:
            unknown.append(name)
    if unknown:
        raise invalid(
            f"Unknown query parameter(s): {', '.join(sorted(set(unknown)))}.", "unknown_parameter"
        )


async def checked(
    connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler
) -> None:
    """The guard of every API route: its query, checked against what it declared
    (`opt=allow(..., query=(...))`), refused in the route's words (`query_refusal`)."""
    opt = handler.opt
    check(
        connection.query_params.multi_items(),
        opt.get("query", ()),
        opt.get("query_refusal", invalid_parameter),
        opt.get("query_types"),
    )


def object_of(name: str) -> str | None:
    """The object a deepObject-style parameter belongs to: `document` for `document[a]`."""
    head, bracket, _ = name.partition("[")
    return head if bracket and name.endswith("]") else None
