"""RFC 9457 problem documents: the one shape of every API error.

Handlers raise `Problem` (or a Litestar HTTP exception); `problem_response` turns any exception
into `application/problem+json` with a stable `code` that the SDK maps to its error classes.
"""

from __future__ import annotations

import logging
from typing import Any

import msgspec
import sqlalchemy.exc
from litestar import Request, Response
from litestar.exceptions import (
    HTTPException,
    NotAuthorizedException,
    NotFoundException,
    PermissionDeniedException,
    ValidationException,
)
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR

logger = logging.getLogger("tether.server")

PROBLEM_MEDIA_TYPE = "application/problem+json"

_TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    413: "Content Too Large",
    415: "Unsupported Media Type",
    422: "Unprocessable Content",
    428: "Precondition Required",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}

_CODES = {
    400: "bad_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "too_large",
    415: "unsupported_media_type",
    422: "invalid",
    429: "rate_limited",
    500: "internal_error",
    503: "unavailable",
}


class Problem(HTTPException):
    """An API error with a stable machine-readable code."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        code: str | None = None,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(detail=detail, status_code=status, headers=headers)
        self.code = code or _CODES.get(status, "error")
        self.extra: dict[str, Any] = extra or {}


def not_found(what: str = "resource") -> Problem:
    return Problem(404, f"No such {what}.")


def forbidden(detail: str) -> Problem:
    return Problem(403, detail)


def conflict(detail: str, code: str = "conflict") -> Problem:
    return Problem(409, detail, code=code)


def invalid(detail: str, code: str = "invalid") -> Problem:
    return Problem(422, detail, code=code)


class ProblemDocument(msgspec.Struct, omit_defaults=True):
    """The body of every error response."""

    type: str
    title: str
    status: int
    detail: str
    code: str
    instance: str | None = None
    errors: list[dict[str, Any]] | None = None
    retry_after: int | None = None


_OVERLOADED_STATES = frozenset({"53000", "53300", "57P03"})
"""PostgreSQL's insufficient_resources, too_many_connections and cannot_connect_now."""


def _database_overloaded(exc: BaseException) -> bool:
    """Whether `exc` means the database has no connection for this request now (the pool's
    wait ran out, PostgreSQL refused one more, SQLite's lock stayed taken): worth a retry."""
    if isinstance(exc, sqlalchemy.exc.TimeoutError):
        return True
    cause: BaseException | None = exc
    for _ in range(5):
        if cause is None:
            return False
        if getattr(cause, "sqlstate", None) in _OVERLOADED_STATES:
            return True
        if isinstance(cause, sqlalchemy.exc.OperationalError) and "database is locked" in str(
            cause
        ):
            return True
        cause = getattr(cause, "orig", None) or cause.__cause__
    return False


def _document(
    request: Request[Any, Any, Any], exc: Exception
) -> tuple[ProblemDocument, dict[str, str]]:
    headers: dict[str, str] = {}
    errors: list[dict[str, Any]] | None = None
    retry_after: int | None = None
    if isinstance(exc, Problem):
        status, code, detail = exc.status_code, exc.code, exc.detail
        headers.update(exc.headers or {})
        errors = exc.extra.get("errors")
        retry_after = exc.extra.get("retry_after")
    elif isinstance(exc, ValidationException):
        status, code = 422, "invalid"
        errors = _validation_errors(request, exc)
        messages = [str(e.get("message")) for e in errors or () if e.get("message")]
        detail = "; ".join(messages) or "The request is not valid."
    elif isinstance(exc, HTTPException):
        status = exc.status_code
        code = _CODES.get(status, "error")
        detail = _http_detail(exc)
        headers.update(exc.headers or {})
    elif _database_overloaded(exc):
        logger.warning("database overloaded on %s %s: %s", request.method, request.url.path, exc)
        status, code, retry_after = 503, "unavailable", 1
        detail = "The database is busy; try again shortly."
        headers["Retry-After"] = "1"
    else:
        logger.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
        status, code = HTTP_500_INTERNAL_SERVER_ERROR, "internal_error"
        detail = "The server failed to handle this request."
    if status == 401:
        headers.setdefault("WWW-Authenticate", 'Bearer realm="tether"')
    document = ProblemDocument(
        type=f"https://tether.dev/problems/{code}",
        title=_TITLES.get(status, "Error"),
        status=status,
        detail=detail,
        code=code,
        instance=request.url.path,
        errors=errors,
        retry_after=retry_after,
    )
    return document, headers


def _validation_errors(
    request: Request[Any, Any, Any], exc: ValidationException
) -> list[dict[str, Any]] | None:
    """The fields Litestar found invalid, without those it invents for another route's path
    parameters."""
    if not isinstance(exc.extra, list):
        return None
    errors = [dict(e) if isinstance(e, dict) else {"message": str(e)} for e in exc.extra]
    return [e for e in errors if not _phantom(request, e)] or errors


def _http_detail(exc: HTTPException) -> str:
    """What to say of one of Litestar's own HTTP errors."""
    if isinstance(exc, NotFoundException):
        return "No such resource."
    if exc.status_code == 413:
        return "The request body is too large."
    if isinstance(exc, NotAuthorizedException) and not exc.detail:
        return "Authentication required."
    if isinstance(exc, PermissionDeniedException) and not exc.detail:
        return "Not allowed."
    return str(exc.detail) if exc.detail else _TITLES.get(exc.status_code, "Error")


def _phantom(request: Request[Any, Any, Any], error: dict[str, Any]) -> bool:
    """An entry Litestar adds for a path parameter of the handler's other route (a handler
    mounted both org-wide and under /projects/{project_id} is told of `project_id` once the
    OpenAPI document has been built): not a fault of this request."""
    key = error.get("key")
    return (
        key in ("project_id", "id")
        and error.get("message") == f"'{key}'"
        and key not in request.path_params
    )


def problem_response(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    """The one exception handler of the app."""
    document, headers = _document(request, exc)
    return Response(
        content=msgspec.json.encode(document),
        status_code=document.status,
        media_type=PROBLEM_MEDIA_TYPE,
        headers=headers,
    )
