"""Who may do what: the one declared authorization policy of the Tether cloud.

`RULES` is the table: for each kind of resource and action, which kind of principal may do it
and how far its reach goes (everything in its organization, or only itself). Every HTTP route
names its rule (`opt=allow(resource, action)`) and the `authorize` guard applies it; the realtime
socket asks `decide` for its operations and `may_hear` for each event it would deliver.
`docs/permissions.md` is generated from this table.

On top of the table, three narrowings hold for every principal at once: a read-only credential
(a read-only API token or app) may only do what the table marks as a read, a project-bound
credential stays inside its project's URLs and cannot change the project itself, and a
credential an app got through OAuth takes only the rules marked `delegable` (nothing that
would outlive the app or widen its grant).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler

from tether.server.identity.credentials import Principal
from tether.server.problems import Problem

ROLES = ("admin", "member", "viewer", "device", "app")
"""The kinds of principal the table speaks of: users by role, devices and apps. An API token
acts as its owner's role, narrowed; the server operator is an admin with `is_superuser`."""


class Reach(Enum):
    """How far a principal's permission goes."""

    ALL = "all"
    """Every object of its kind in the principal's organization (or project)."""
    SELF = "self"
    """Only the principal itself: a device's own record, telemetry, files folder and updates."""
    OPERATOR = "operator"
    """Only the server operator (an admin with `is_superuser`)."""


ALL, SELF, OPERATOR = Reach.ALL, Reach.SELF, Reach.OPERATOR
PEOPLE = ("admin", "member", "viewer")
READERS = ("admin", "member", "viewer", "app")
WRITERS = ("admin", "member", "app")
FLEET = ("admin", "member")


def _who(*roles: str, reach: Reach = ALL, **others: Reach) -> dict[str, Reach]:
    return {role: reach for role in roles} | others


@dataclass(frozen=True)
class Rule:
    """One row of the table: an action on a kind of resource and who may take it."""

    resource: str
    action: str
    who: Mapping[str, Reach]
    reads: bool = False
    """Whether the action only reads, so read-only credentials may take it."""
    summary: str = ""
    delegable: bool = True
    """Whether an app acting for a person through OAuth may take it. Not for what would
    outlive the app or widen its grant: minting tokens or apps, consenting to apps, passwords,
    users and roles."""


RESOURCE_KINDS = ("thing", "location", "zone", "experience", "feed", "content")

_TABLE: list[Rule] = [
    Rule("session", "read", _who(*ROLES), True, "whoami and the caller's organization"),
    Rule("organization", "create", _who("admin", reach=OPERATOR), False, "new tenants", False),
    Rule("user", "read", _who(*PEOPLE), True, "list the organization's users"),
    Rule("user", "write", _who("admin"), False, "create, change and delete users", False),
    Rule("token", "read", _who(*PEOPLE), True, "list one's own API tokens"),
    Rule("token", "write", _who(*PEOPLE), False, "mint and revoke one's own API tokens", False),
    Rule("password", "change", _who(*PEOPLE), False, "change one's own password", False),
    Rule("device", "read", _who(*READERS, device=SELF), True),
    Rule("device", "manage", _who(*FLEET), False, "create and delete devices"),
    Rule("device", "update", _who(*WRITERS, device=SELF), False, "change a device's record"),
    Rule("device", "rotate", _who(*FLEET), False, "issue a new device secret"),
    Rule("pairing", "approve", _who(*FLEET), False, "approve a pairing code"),
    Rule("pairing", "read", _who(*FLEET), True, "see devices waiting to pair (never their codes)"),
    Rule("app", "read", _who(*PEOPLE), True),
    Rule("app", "write", _who("admin"), False, "create, change, re-key and delete apps", False),
    Rule("oauth", "read", _who(*PEOPLE), True, "the apps one has let act for oneself"),
    Rule(
        "oauth",
        "authorize",
        _who(*PEOPLE),
        False,
        "let a registered app act for oneself, or stop it",
        False,
    ),
    Rule("project", "read", _who(*ROLES), True),
    Rule("project", "write", _who(*FLEET), False, "create and change projects"),
    Rule("project", "delete", _who("admin"), False, "delete a project and all it holds"),
    *(
        rule
        for kind in RESOURCE_KINDS
        for rule in (
            Rule(kind, "read", _who(*ROLES), True),
            Rule(kind, "write", _who(*WRITERS), False, "create, change and delete"),
        )
    ),
    Rule("feed", "append", _who(*WRITERS, "device"), False, "add an entry to a feed"),
    Rule("data", "read", _who(*ROLES), True),
    Rule("data", "write", _who(*WRITERS), False, "create, replace and delete data items"),
    Rule("telemetry", "read", _who(*READERS, device=SELF), True, "latest values and queries"),
    Rule("telemetry", "push", _who(*WRITERS, device=SELF), False, "store telemetry entries"),
    Rule("file", "read", _who(*ROLES), True, "list, download, signatures and deltas"),
    Rule(
        "file",
        "write",
        _who(*WRITERS, device=SELF),
        False,
        "upload, patch, folders and tasks (a device: uploads and patches under "
        "devices/<its id>/ only)",
    ),
    Rule("package", "read", _who(*READERS), True, "versions and the public signing key"),
    Rule("package", "write", _who(*FLEET), False, "publish and delete versions"),
    Rule("package", "key", _who("admin"), False, "set the organization's signing key"),
    Rule("deployment", "read", _who(*READERS), True),
    Rule("deployment", "write", _who(*FLEET), False, "roll out, pause, resume, abort, delete"),
    Rule("update", "check", _who(*READERS, device=SELF), True, "what a device should install"),
    Rule("update", "download", _who(*READERS, device=SELF), True, "fetch an offered package"),
    Rule("update", "report", _who(*WRITERS, device=SELF), False, "a device's install progress"),
    Rule("report", "read", _who(*READERS, device=SELF), True, "update reports, as events"),
    Rule(
        "command",
        "read",
        _who(*READERS, device=SELF),
        True,
        "commands, their states and results (a device: its own)",
    ),
    Rule("command", "send", _who(*WRITERS), False, "send, cancel and resend commands"),
    Rule(
        "command",
        "answer",
        _who(*WRITERS, device=SELF),
        False,
        "acknowledge, report progress on and answer commands (a device: its own; people and "
        "apps: for devices that do not run the SDK)",
    ),
    Rule("twin", "read", _who(*READERS, device=SELF), True, "a device's twin and its history"),
    Rule(
        "twin",
        "write",
        _who(*WRITERS, device=SELF),
        False,
        "patch a twin (each section as the next two rows say)",
    ),
    Rule("twin", "desire", _who(*WRITERS), False, "a twin's desired state and tags"),
    Rule("twin", "report", _who(device=SELF), False, "a device's own reported state"),
    Rule("channel", "listen", _who(*ROLES), True, "subscribe, members, events"),
    Rule(
        "event", "read", _who(*ROLES), True, "the journal of recent events, each to who may hear it"
    ),
    Rule("channel", "broadcast", _who(*ROLES), False, "broadcast and respond"),
    Rule(
        "channel",
        "system",
        _who(*WRITERS),
        False,
        "broadcast on system channels (devices only listen there)",
    ),
]

RULES: dict[tuple[str, str], Rule] = {(r.resource, r.action): r for r in _TABLE}

_ANYWHERE = frozenset({"session"})
_PROJECT_PATH = re.compile(r"^/api/v1/projects/([^/]+)(/|$)")
_SELF_PREFIX = "devices/"


def role_of(principal: Principal) -> str:
    """The column of the table that applies to `principal`."""
    return principal.role if principal.type == "user" else principal.type


def decide(
    principal: Principal,
    resource: str,
    action: str,
    target: str | None = None,
    path: str | None = None,
) -> None:
    """Raise a 403 problem unless `principal` may take `action` on `resource`.

    `target` is the object acted on where a SELF reach needs it (a device id, or a file path
    for the files area); `path` is the request path, for the project narrowing."""
    rule = RULES[(resource, action)]
    if principal.read_only and not rule.reads:
        raise Problem(403, "This credential is read-only.", code="read_only")
    if principal.client_id and not rule.delegable:
        raise Problem(
            403,
            "An app acting for a person may not do this: it would outlive the app or widen "
            "its grant.",
            code="forbidden",
        )
    if principal.project_id and resource not in _ANYWHERE:
        match = _PROJECT_PATH.match(path or "")
        if match is None or match.group(1) != principal.project_id:
            raise Problem(
                403,
                "This credential is limited to one project; use its /api/v1/projects/{id} URLs.",
                code="outside_project",
            )
        if resource == "project" and action != "read":
            raise forbidden_for(principal, rule)
    reach = rule.who.get(role_of(principal))
    if reach is ALL:
        return
    if reach is OPERATOR and principal.is_superuser:
        return
    if reach is SELF and target is not None and _is_self(principal, resource, target):
        return
    raise forbidden_for(principal, rule)


def allowed(principal: Principal, resource: str, action: str, target: str | None = None) -> bool:
    """Whether `decide` would let the action through (narrowing by project path aside)."""
    try:
        decide(principal, resource, action, target, path=_project_path(principal))
    except Problem:
        return False
    return True


def _project_path(principal: Principal) -> str | None:
    return f"/api/v1/projects/{principal.project_id}/" if principal.project_id else None


def _is_self(principal: Principal, resource: str, target: str) -> bool:
    if resource == "file":
        own = f"{_SELF_PREFIX}{principal.id}"
        return target.strip("/") == own or target.lstrip("/").startswith(own + "/")
    return target == principal.id


def forbidden_for(principal: Principal, rule: Rule) -> Problem:
    what = rule.summary or f"{rule.action} {rule.resource}s"
    role = role_of(principal)
    article = "An" if role[0] in "aeiou" else "A"
    return Problem(403, f"{article} {role} may not do this ({what}).", code="forbidden")


def own_device(principal: Principal, given: str | None) -> str | None:
    """The device a check or report is about: a device speaks for itself only; users and
    apps name one (None when they did not)."""
    if principal.type == "device":
        if given not in (None, principal.id):
            raise Problem(403, "A device checks and reports for itself only.", code="forbidden")
        return principal.id
    return given


# -- HTTP: the declaration on each route and the guard that applies it


CALLER = "caller"
"""A route's `target` when the handler binds what it acts on to the caller itself (an update
check or report speaks for the calling device: `own_device`; a download is bound to the
device by its grant)."""


def allow(resource: str, action: str, target: str | None = None, **opt: Any) -> dict[str, Any]:
    """A route's `opt`: the rule it obeys and, for SELF reaches, which path parameter names
    the object acted on (or `CALLER`)."""
    if (resource, action) not in RULES:
        raise KeyError(f"no rule for {resource}:{action}")
    return {"policy": (resource, action), "target": target, **opt}


async def authorize(
    connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler
) -> None:
    """The guard of every API route: the route's rule, applied to the caller. A coroutine,
    though it never waits: Litestar runs a plain function guard in a worker thread, a hop that
    cost more than the check on every request."""
    if handler.opt.get("exclude_from_auth"):
        return
    declared = handler.opt.get("policy")
    if declared is None:
        raise Problem(403, "This operation has no authorization rule.", code="forbidden")
    resource, action = declared
    target_param = handler.opt.get("target")
    principal: Principal = connection.user
    scope = connection.scope
    target: str | None = None
    if target_param == CALLER:
        target = principal.id
    elif target_param:
        target = (scope.get("path_params") or {}).get(target_param)
    decide(principal, resource, action, target, scope.get("root_path", "") + scope["path"])


# -- Events: a subscriber hears only about what it may read


def may_hear(principal: Principal, event_type: str, event_id: str, document: Any) -> bool:
    """Whether an event about object `event_id` may reach `principal`: the rule for reading
    that object. A movement event (`location.<id>`, `project.<id>`) is about the device or
    thing that moved. A project-bound principal hears only what is shown to be in its project."""
    dataset, _, dataset_id = event_type.partition(".")
    if dataset_id:
        kind = _field(document, "kind")
        resource = kind if kind in ("device", "thing") else "device"
        in_project = dataset == "project" and dataset_id == principal.project_id
    else:
        resource = event_type
        in_project = (
            event_id == principal.project_id
            if resource == "project"
            else _field(document, "project_id") == principal.project_id
        )
    if (resource, "read") not in RULES or (principal.project_id and not in_project):
        return False
    return allowed(principal, resource, "read", event_id)


def heard_types(principal: Principal) -> tuple[frozenset[str], bool]:
    """What `may_hear` could let through for `principal`, by event type alone: the plain
    types whose objects it may read, and whether movement events (`location.<id>`, about a
    device or thing) may be. The journal narrows its query by these, so a page's total counts
    no event the caller could never be shown."""
    plain = frozenset(
        resource
        for (resource, action) in RULES
        if action == "read" and allowed(principal, resource, "read", principal.id)
    )
    return plain, allowed(principal, "device", "read") and allowed(principal, "thing", "read")


def _field(document: Any, name: str) -> Any:
    if isinstance(document, Mapping):
        return document.get(name)
    return getattr(document, name, None)


# -- Documentation


def permissions_markdown() -> str:
    """`docs/permissions.md`, generated from `RULES` (scripts/gendocs.py)."""
    marks = {ALL: "yes", SELF: "own", OPERATOR: "operator"}
    lines = [
        "# Permissions",
        "",
        "<!-- Generated by scripts/gendocs.py from tether.server.identity.policy: edit that, not"
        " this. -->",
        "",
        "Who may do what inside an organization. The organization is the wall between tenants:",
        "no principal reaches another organization's data, and another organization's ids",
        "answer exactly as made-up ones do. Inside it, this table decides; every HTTP route,",
        "every realtime operation and every event obeys it, through one guard",
        "(`tether.server.identity.policy`).",
        "",
        "- **yes**: every such object of the organization (or of the credential's project).",
        "- **own**: only the principal itself (a device's own record, its telemetry, its",
        "  update checks and reports, files under `devices/<its id>/`).",
        "- **operator**: only the server operator (the first admin, `is_superuser`).",
        "- Users have a role: `admin`, `member` or `viewer`. An API token acts as its owner,",
        "  narrowed: a read-only token (or read-only app) may only take the actions marked",
        "  *read* below, and a project token stays inside `/api/v1/projects/{id}/…` and cannot",
        "  change or delete its project.",
        "- An app acting for a person through OAuth acts as that person, except for what",
        "  *by apps* marks no: what would outlive the app or widen its grant.",
        "- Realtime: a socket hears an event only when its principal may read the object",
        "  the event is about.",
        "",
        "| resource | action | read | " + " | ".join(ROLES) + " | by apps | what |",
        "| --- | --- | :-: | " + " | ".join(":-:" for _ in ROLES) + " | :-: | --- |",
    ]
    for rule in _TABLE:
        cells = [marks.get(rule.who[r], "") if r in rule.who else "no" for r in ROLES]
        read = "read" if rule.reads else ""
        lines.append(
            f"| {rule.resource} | {rule.action} | {read} | "
            + " | ".join(cells)
            + f" | {'' if rule.delegable else 'no'} | {rule.summary} |"
        )
    return "\n".join(lines) + "\n"
