"""Every error the SDK raises, rooted in one class.

    TetherError
    ├── ConfigurationError          bad or inconsistent client options or arguments
    ├── LocalFileError              a local file cannot be read or written (also an OSError)
    ├── NetworkError                the server could not be reached or the connection broke
    │   ├── RequestTimeout
    │   └── DownloadError           a transfer broke off; its partial file is kept to resume
    ├── PairingError                pairing expired or was refused
    ├── AuthorizationError          an OAuth authorization was denied, refused or forged
    ├── OutboxFullError             the telemetry outbox is at its bound (policy "error")
    ├── PushError                   a telemetry push did not deliver everything
    ├── DeltaError                  a signature or delta is corrupt, truncated or of a wrong kind
    ├── ChecksumError               downloaded bytes do not match their SHA-256 or signature
    ├── DowngradeError              an update would install an older version than installed
    ├── TaskError                   a server task (move, copy, remove) failed
    │   └── TaskTimeoutError        it had not ended in time (also a TimeoutError)
    ├── CommandTimeoutError         a command had not ended when the wait ran out (a TimeoutError)
    ├── CommandRejected             raised by a device's command handler: it refuses the command
    ├── RealtimeError               the server refused a realtime request (an error frame)
    └── APIError                    the server answered with a problem document
        ├── BadRequestError         400, 413, 422 (`ValidationError` is the same class)
        ├── AuthenticationError     401
        ├── PermissionDeniedError   403
        ├── NotFoundError           404
        ├── ConflictError           409
        ├── RateLimitError          429 (`retry_after` in seconds)
        └── ServerError             5xx

Using a client after `close()` raises `ClientClosedError`, a `RuntimeError`: it is a bug in the
caller, not a condition to handle.
"""

from __future__ import annotations

from typing import Any


class TetherError(Exception):
    """The root of every error the Tether SDK raises."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ConfigurationError(TetherError):
    """The client, or one of its calls, was given options or arguments it cannot use."""


class LocalFileError(TetherError, OSError):
    """A local file or folder could not be read or written: missing, a folder where a file
    was expected, or not permitted. Also an `OSError`, so existing handlers still catch it."""

    def __str__(self) -> str:
        return self.message


class NetworkError(TetherError):
    """The server could not be reached, or the connection failed mid-request."""


class RequestTimeout(NetworkError):
    """The server did not answer in time."""


class DownloadError(NetworkError):
    """A download broke off midway; `partial` holds the bytes so far, and calling the download
    again resumes from there."""

    def __init__(self, message: str, partial: Any) -> None:
        super().__init__(message)
        self.partial = partial


class DowngradeError(TetherError):
    """The offered version is older than the installed one (pass `allow_downgrade=True`)."""


class PairingError(TetherError):
    """Pairing could not complete: the code expired, or was already used."""


class AuthorizationError(TetherError):
    """An app's OAuth authorization came back without a code: the person denied it
    (`error` "access_denied"), the server refused the request, or the callback's `state` was
    not the request's."""

    def __init__(self, error: str, description: str = "") -> None:
        super().__init__(f"{error}: {description}" if description else error)
        self.error = error
        self.description = description


class OutboxFullError(TetherError):
    """The telemetry outbox holds as many entries as it may; push before committing more."""


class PushError(TetherError):
    """A telemetry push did not deliver everything.

    `retained_data` is True when what was not delivered is still queued (network trouble, a
    5xx, 429 or 401: push again later) and False when the server rejected it as invalid or
    forbidden: those entries were moved aside, see `Telemetry.rejected()`. `cause` is the error
    behind it and `pushed` how many entries did reach the server first."""

    def __init__(
        self, message: str, *, retained_data: bool, cause: TetherError, pushed: int = 0
    ) -> None:
        super().__init__(message)
        self.retained_data = retained_data
        self.cause = cause
        self.pushed = pushed


class DeltaError(TetherError):
    """librsync refused a signature or delta: corrupt, truncated, or not of the expected kind."""


class ChecksumError(TetherError):
    """Bytes received do not match their announced SHA-256, or a package its signature;
    nothing was kept."""


class TaskError(TetherError):
    """A task on the server (move, copy, remove) ended in failure; the message says why."""


class TaskTimeoutError(TaskError, TimeoutError):
    """A task was still running when the wait for it ran out (also a `TimeoutError`)."""


class CommandTimeoutError(TetherError, TimeoutError):
    """A command (or a command to many) had not ended when the wait for it ran out; it goes
    on, and `command` is how it stood."""

    def __init__(self, message: str, command: Any = None) -> None:
        super().__init__(message)
        self.command = command


class CommandRejected(TetherError):
    """Raise it in a command handler to refuse the command: it ends `rejected`, with this
    exception's message as its error (any other exception makes it `failed`)."""


class RealtimeError(TetherError):
    """The server refused a realtime request (an `error` frame); `code` says why, and the
    socket stays usable for what is allowed."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.code = code


class APIError(TetherError):
    """The server refused a request; `problem` is its RFC 9457 problem document."""

    def __init__(
        self, message: str, *, status: int, code: str, problem: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.problem = problem or {}

    @property
    def payload(self) -> dict[str, Any]:
        """The problem document, under the name the EXP SDK used."""
        return self.problem

    def __str__(self) -> str:
        return f"{self.status} {self.code}: {self.message}"


class BadRequestError(APIError):
    """The request was malformed or failed validation (400, 413, 422)."""


ValidationError = BadRequestError


class AuthenticationError(APIError):
    """The credentials are missing, wrong, expired or revoked (401)."""


class PermissionDeniedError(APIError):
    """The credentials are valid but may not do this (403)."""


class NotFoundError(APIError):
    """No such object, or not one the caller may see (404)."""


class ConflictError(APIError):
    """The request conflicts with the current state (409)."""


class RateLimitError(APIError):
    """Too many requests (429); `retry_after` says how many seconds to wait."""

    @property
    def retry_after(self) -> float | None:
        value = self.problem.get("retry_after")
        return float(value) if isinstance(value, int | float) else None


class ServerError(APIError):
    """The server failed (5xx)."""


class ClientClosedError(RuntimeError):
    """The client was closed; make a new one."""


_BY_STATUS: dict[int, type[APIError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    413: BadRequestError,
    422: BadRequestError,
    429: RateLimitError,
}


def unexpected_answer(status: int, what: str) -> APIError:
    """An answer that is not the Tether API's (a proxy's page, a captive portal...)."""
    return APIError(
        f"The server answered {what} where the Tether API answers a JSON document; is "
        "something other than Tether (a proxy, a captive portal) at this URL?",
        status=status,
        code="unexpected_answer",
    )


def api_error(status: int, body: Any) -> APIError:
    """The SDK error for a failed response, driven by the server's problem document."""
    problem = body if isinstance(body, dict) else {}
    code = str(problem.get("code") or f"http_{status}")
    message = str(problem.get("detail") or problem.get("title") or f"HTTP {status}")
    if status >= 500:
        cls: type[APIError] = ServerError
    else:
        cls = _BY_STATUS.get(status, APIError)
    return cls(message, status=status, code=code, problem=problem)
