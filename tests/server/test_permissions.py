"""The authorization matrix: every operation of the OpenAPI document, every kind of principal,
(its own organization's ids, another organization's ids, made-up ids), each answer compared
with the declared policy table, which is the oracle. Another organization's ids must answer
exactly as made-up ones do."""

from __future__ import annotations

import re
import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest

import tether
from tests.conftest import RunningServer, Tenant
from tests.server.world import PLURALS, PUBLIC, body_for, endpoints, fill, populate
from tether.server.identity.policy import ALL, OPERATOR, RULES, SELF, Rule

NAMED_UPSERTS = ("/data/{group}/{key}", "/files/data/{path}", "/versions/{version}")
"""PUTs that create by name in the caller's own namespace: no id of anyone else's is asked."""


@dataclass
class Caller:
    """A principal of the matrix: its access token and what `whoami` says of it."""

    kind: str
    token: str
    identity: dict[str, Any]
    own: dict[str, str]
    """The ids its "own organization" case uses."""
    other: dict[str, str]

    @property
    def role(self) -> str:
        return str(self.identity.get("role") or self.identity["type"])


def routes() -> dict[tuple[str, str], dict[str, Any]]:
    """Each operation's declared `opt`, read from an application built the same way as the
    running one (building it starts nothing)."""
    from tether.server.app import create_app
    from tether.server.settings import Settings

    app = create_app(Settings.load({"data": "/nonexistent"}, environ={}))
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for route in app.routes:
        path = re.sub(r"\{(\w+):\w+\}", r"{\1}", route.path)
        for handler in getattr(route, "route_handlers", []):
            for method in getattr(handler, "http_methods", ()):
                found[(method, path)] = dict(handler.opt)
    return found


def permitted(caller: Caller, rule: Rule, target: str | None, path: str) -> bool:
    """What the table says, read independently of the server's code."""
    who = caller.identity
    if who.get("read_only") and not rule.reads:
        return False
    if who.get("client_id") and not rule.delegable:
        return False
    project = who.get("project_id")
    if project and rule.resource != "session":
        if not re.match(rf"^/api/v1/projects/{re.escape(project)}(/|$)", path):
            return False
        if rule.resource == "project" and rule.action != "read":
            return False
    reach = rule.who.get(caller.role)
    if reach is ALL:
        return True
    if reach is OPERATOR:
        return bool(who.get("is_superuser"))
    if reach is SELF and target is not None:
        own = f"devices/{who['id']}"
        return target == who["id"] or target == own or target.startswith(own + "/")
    return False


def made_up() -> dict[str, str]:
    fake = str(uuid.uuid4())
    names = {"group": "nope", "key": "nope", "path": "nope/none.txt", "reference": "nope"}
    named = ["project_id", *PLURALS, "user_id", "token_id", "task_id", "version_id", "deployments"]
    named += ["family_id", "commands", "groups"]
    ids = dict.fromkeys(named, fake)
    return ids | names | {"version": "9.9.9"}


def _sign_in(url: str, **credentials: Any) -> tuple[str, dict[str, Any]]:
    with tether.Client(url, **credentials) as client:
        auth = client.get_auth()
        assert auth.token is not None
        return auth.token, client.get("auth/whoami")


def _oauth_token(url: str, admin: tether.Client, person_token: str) -> str:
    """A write-scope access token an app got through OAuth, acting for the person."""
    callback = "http://127.0.0.1/callback"
    app = admin.post("apps", {"name": "acting", "document": {"redirect_uris": [callback]}})
    flow = tether.OAuthFlow(url, app["id"], callback, scope="write")
    query = dict(parse_qsl(urlsplit(flow.authorization_url).query))
    with tether.Client(url, token=person_token) as person:
        back = person.post("oauth/authorize", query)["redirect_to"]
    with tether.Client(url, oauth=flow.grant(back)) as acting:
        token = acting.get_auth().token
    assert token is not None
    return token


@pytest.fixture
def callers(
    server: RunningServer, make_tenant: Callable[[], Tenant]
) -> tuple[list[Caller], dict[str, str]]:
    """Org A's principals of every kind, and org B's admin; the first sees A's objects as its
    own, the outsider B's."""
    a, b = make_tenant(), make_tenant()
    with a.client() as admin_a, b.client() as admin_b:
        ids_a, ids_b = populate(admin_a), populate(admin_b, suffix="-b")
        url = server.url
        found: list[Caller] = []

        def add(kind: str, token: str, own: dict[str, str], other: dict[str, str]) -> None:
            identity = httpx.get(
                f"{url}/api/v1/auth/whoami", headers={"Authorization": f"Bearer {token}"}
            ).json()
            found.append(Caller(kind, token, identity, own, other))

        token, _ = _sign_in(url, token=admin_b.get_auth().token)
        add("outsider", token, ids_b, ids_a)
        device = admin_a.post("devices", {"name": "caller"})
        token, _ = _sign_in(url, device_id=device["id"], device_secret=device["secret"])
        add("device", token, ids_a, ids_b)
        app = admin_a.post("apps", {"name": "caller"})
        token, _ = _sign_in(url, app_id=app["id"], api_key=app["secret"])
        add("app", token, ids_a, ids_b)
        for role in ("viewer", "member"):
            password = secrets.token_urlsafe(12)
            admin_a.post("users", {"username": role, "password": password, "role": role})
            token, _ = _sign_in(url, username=role, password=password, organization=a.organization)
            add(role, token, ids_a, ids_b)
        add("app acting for a member", _oauth_token(url, admin_a, token), ids_a, ids_b)
        add(
            "read-only token",
            admin_a.post("tokens", {"name": "ro", "read_only": True})["token"],
            ids_a,
            ids_b,
        )
        project_token = admin_a.post("tokens", {"name": "p", "project_id": ids_a["project_id"]})
        add("project token", project_token["token"], ids_a, ids_b)
        add("admin", admin_a.get_auth().token or "", ids_a, ids_b)
    return found, made_up()


def test_every_operation_for_every_principal_obeys_the_policy(
    server: RunningServer, callers: tuple[list[Caller], dict[str, str]]
) -> None:
    everyone, fake = callers
    declared = routes()
    operations = [op for op in endpoints(server) if op not in PUBLIC]
    operations.sort(key=lambda op: op[0] == "DELETE")
    wrong: list[str] = []
    asked = 0
    with httpx.Client(base_url=server.url, timeout=30) as http:

        def ask(caller: Caller, method: str, path: str) -> tuple[int, str | None]:
            nonlocal asked
            asked += 1
            body = body_for(method, path.replace(server.url, ""))
            response = http.request(
                method, path, json=body, headers={"Authorization": f"Bearer {caller.token}"}
            )
            code = response.json().get("code") if response.status_code >= 400 else None
            return response.status_code, code

        for caller in everyone:
            for method, template in operations:
                opt = declared[(method, template)]
                rule = RULES[opt["policy"]]
                cases = [("own", caller.own)]
                if caller.kind == "device" and (
                    "/devices/{id}" in template or "{path}" in template
                ):
                    me = caller.identity["id"]
                    cases.append(("self", caller.own | {"devices": me, "path": f"devices/{me}/x"}))
                for case, ids in cases:
                    path = fill(template, ids)
                    target = _target(rule, template, ids, caller)
                    status, code = ask(caller, method, path)
                    allowed = permitted(caller, rule, target, path)
                    if status >= 500 or (allowed and status in (401, 403)):
                        wrong.append(f"{caller.kind} {case} {method} {path}: {status} {code}")
                    elif not allowed and status != 403:
                        wrong.append(f"{caller.kind} {case} {method} {path}: {status}, not 403")
                if "{" not in template or (template.endswith(NAMED_UPSERTS) and method == "PUT"):
                    continue
                foreign = ask(caller, method, fill(template, caller.other))
                invented = ask(caller, method, fill(template, fake))
                if foreign != invented:
                    wrong.append(
                        f"{caller.kind} {method} {template}: another organization's ids answer "
                        f"{foreign}, made-up ids {invented}"
                    )
                if 200 <= foreign[0] < 300:
                    wrong.append(f"{caller.kind} {method} {template}: {foreign} for foreign ids")
    print(
        f"authorization matrix: {len(operations)} operations x {len(everyone)} principals x "
        f"3 cases (+ a device's own ids): {asked} requests, {len(wrong)} wrong"
    )
    assert not wrong, "\n".join(wrong[:60])


def _target(rule: Rule, template: str, ids: dict[str, str], caller: Caller) -> str | None:
    """What a SELF reach compares with the caller: the device of a `/devices/{id}` path, the
    file path of the files area, the caller itself for its update checks and reports and for
    the commands it reads and answers (each handler keeps a device to its own)."""
    bound_to_caller = rule.resource == "command" and "/devices/{id}" not in template
    if rule.resource == "update" or (bound_to_caller and "/groups/" not in template):
        return str(caller.identity["id"])
    if "/devices/{id}" in template:
        return ids["devices"]
    if rule.resource == "file" and "{path}" in template:
        return ids["path"]
    return None
