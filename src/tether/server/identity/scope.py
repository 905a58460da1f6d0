"""Where a request acts: the caller's organization and, under `/projects/{project_id}/…`, one
of its projects. Every area scopes its rows through these, beside the policy that decides what
the caller may do there."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from litestar import Request
from litestar.connection import ASGIConnection

from tether.server.db.reads import Reads, fetch
from tether.server.db.tables import resources
from tether.server.identity.credentials import Principal
from tether.server.problems import not_found

ORG_SCOPE = "-"
"""The storage scope of rows that belong to the organization rather than to a project."""

_PROJECT = sa.select(resources.c.id).where(
    resources.c.id == sa.bindparam("project_id"),
    resources.c.org_id == sa.bindparam("org_id"),
    resources.c.kind == "project",
)


def scoped_paths(suffix: str) -> list[str]:
    """`suffix` org-wide and under `/projects/{project_id}`."""
    return [suffix, f"/projects/{{project_id:str}}{suffix}"]


def principal_of(request: ASGIConnection[Any, Any, Any, Any]) -> Principal:
    """Who is calling, as the authentication middleware found it."""
    return request.user  # type: ignore[no-any-return]


async def resolve_scope(
    conn: Reads, request: ASGIConnection[Any, Any, Any, Any], in_projects: bool = True
) -> tuple[str, str | None]:
    """The caller's organization and, under `/projects/{project_id}/…`, the project (404 if not
    one of the organization's projects). What lives only organization-wide (`in_projects`
    false) ignores the project part of the path."""
    org_id = principal_of(request).org_id
    project_id = request.path_params.get("project_id")
    if project_id is None or not in_projects:
        return org_id, None
    if not await fetch(conn, _PROJECT, {"project_id": project_id, "org_id": org_id}):
        raise not_found("project")
    return org_id, project_id


async def storage_scope(conn: Reads, request: Request[Any, Any, Any]) -> tuple[str, str]:
    """The caller's organization and the key of its tree: a project's id, or "-" org-wide."""
    org_id, project_id = await resolve_scope(conn, request)
    return org_id, project_id or ORG_SCOPE
