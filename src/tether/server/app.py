"""The ASGI application: routes, error handling, authentication and the lifespan that opens and
closes the database and the event bus."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import os
import shutil
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import msgspec
from litestar import Litestar, Request, Router, get
from litestar.datastructures import ResponseHeader
from litestar.di import Provide
from litestar.middleware import DefineMiddleware
from litestar.openapi import OpenAPIConfig

from tether._version import __version__
from tether.server import console, front
from tether.server.apidoc import CompletedJsonRender
from tether.server.commands import routes as command_routes
from tether.server.commands.delivery import Delivery
from tether.server.console import pages as console_pages
from tether.server.db.engine import create_engine, private_database
from tether.server.db.reads import Reader
from tether.server.files import content, tasks, tree
from tether.server.files import sync as file_sync
from tether.server.files.blobs import collect_blobs, open_blobs
from tether.server.identity import oauth, pairing, sessions, signin, users
from tether.server.identity.authn import AuthenticationMiddleware
from tether.server.identity.bootstrap import FirstAdmin, prepare
from tether.server.identity.credentials import AccessTokens
from tether.server.identity.policy import authorize
from tether.server.identity.revocations import Revocations
from tether.server.identity.sealed import Sealer, master_key
from tether.server.identity.seen import Seen
from tether.server.identity.signin_limits import LoginLimiter
from tether.server.inputs import MAX_JSON_BODY, RefuseNul, TetherRequest
from tether.server.parameters import checked
from tether.server.realtime import journal
from tether.server.realtime.forwarding import forward_events
from tether.server.realtime.hub import realtime
from tether.server.realtime.relay import RedisBackplane
from tether.server.resources import data, kinds
from tether.server.resources import pairing as pairing_approval
from tether.server.settings import Settings
from tether.server.state import ServerState
from tether.server.telemetry import ingest, queries, retention
from tether.server.twin import routes as twin_routes
from tether.server.twin.delivery import TwinDelivery
from tether.server.updates import checks, deployments, installed, packages

logger = logging.getLogger("tether.server")

API_PREFIX = "/api/v1"


class Health(msgspec.Struct, omit_defaults=True):
    status: str
    """`ok`, or `degraded` when a part works with less than it should (see `problems`)."""
    version: str
    problems: dict[str, str] = {}
    """What is degraded and why, by part (`realtime`: the other nodes cannot be reached)."""


@get("/health", opt={"exclude_from_auth": True}, tags=["server"], summary="Ready check")
async def health(request: Request[Any, Any, Any]) -> Health:
    """Answers while the process serves. `degraded` still serves: a node whose Redis is down
    serves its own sockets and every HTTP request, and says so here."""
    state: ServerState = request.app.state.tether
    problems = {}
    if state.hub.backplane.problem is not None:
        problems["realtime"] = state.hub.backplane.problem
    return Health("degraded" if problems else "ok", __version__, problems)


def _announce(admin: FirstAdmin, settings: Settings) -> None:
    url = f"http://{settings.host}:{settings.port}"
    lines = [
        "",
        f"Tether created organization {admin.organization!r} with admin {admin.username!r}.",
    ]
    if admin.password:
        lines.append(f"Generated password (shown once): {admin.password}")
    lines += [
        f"Sign in to the console at {url}/ with it, or log in the CLI with:",
        f"  {_command()} login {url} --organization {admin.organization}"
        f" --username {admin.username}",
        "",
    ]
    print("\n".join(lines), file=sys.stderr, flush=True)


def _command() -> str:
    """How to run the `tether` command from here: its name when it is on PATH, else the path
    of the one running (a venv that is not activated)."""
    running = Path(sys.argv[0])
    if running.name == "tether" and shutil.which("tether") != str(running.resolve()):
        return str(running)
    return "tether"


async def _hourly(job: Callable[[], Awaitable[int]], done: str) -> None:
    """Run a housekeeping `job` now and then every hour; `done` % its count is logged."""
    while True:
        try:
            count = await job()
            if count:
                logger.info(done, count)
        except Exception:
            logger.exception("housekeeping failed (%s); trying again in an hour", done)
        await asyncio.sleep(3600)


def _prune_telemetry(state: ServerState) -> Callable[[], Awaitable[int]]:
    """The telemetry retention setting as a job."""
    days = state.settings.telemetry_retention_days

    def job() -> Awaitable[int]:
        return retention.prune(state.engine, dt.datetime.now(dt.UTC) - dt.timedelta(days=days))

    return job


WORKER_OF = "TETHER_WORKER_OF"
"""Set by `tether serve --workers N` to its own process id, for the workers it starts."""


async def _exit_with(supervisor: int) -> None:
    """End this worker when the process that started it is gone (killed with SIGKILL, say),
    instead of serving on as an orphan nobody supervises. Linux tells through a pidfd."""
    try:
        watched = os.pidfd_open(supervisor)
    except ProcessLookupError:
        watched = None
    except (AttributeError, OSError):
        return
    if watched is not None and os.getppid() == supervisor:
        gone = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_reader(watched, gone.set)
        try:
            await gone.wait()
        finally:
            loop.remove_reader(watched)
    if watched is not None:
        os.close(watched)
    logger.warning("the supervising process %d is gone; this worker stops", supervisor)
    os.kill(os.getpid(), signal.SIGTERM)


@contextlib.asynccontextmanager
async def _background(state: ServerState) -> AsyncIterator[None]:
    """Housekeeping tasks that live as long as the server."""
    if state.settings.telemetry_retention_days:
        state.spawn(_hourly(_prune_telemetry(state), "telemetry retention deleted %d points"))
    state.spawn(tasks.sweep_tasks(state))
    state.spawn(
        _hourly(
            lambda: collect_blobs(
                state.engine, state.reader, state.blobs, state.settings.blob_grace
            ),
            "removed %d unreferenced blobs",
        )
    )
    state.hub.hearing.append(deployments.heard(state))
    state.areas["commands"] = Delivery(state)
    state.areas["twin"] = TwinDelivery(state)
    for area in state.areas.values():
        area.start()
    state.spawn(forward_events(state.bus, state.hub))
    state.spawn(journal.record(state, state.bus))
    state.spawn(_hourly(lambda: journal.prune(state), "forgot %d events past their retention"))
    state.spawn(state.revocations.follow())
    state.spawn(state.seen.follow(lambda: state.hub.connected("device")))
    state.spawn(state.installed.follow())
    state.revocations.listeners.append(state.hub.revoked)
    state.spawn(_hourly(state.limiter.prune, "forgot %d ended sign-in windows"))
    if state.settings.redis_url:
        state.hub.backplane = RedisBackplane(state.settings.redis_url, state.hub)
    state.spawn(state.hub.backplane.run())
    supervisor = os.environ.get(WORKER_OF)
    if supervisor:
        state.spawn(_exit_with(int(supervisor)))
    try:
        yield
    finally:
        await state.stop_tasks()


def private_folder(data: Path) -> None:
    """The data folder (database, blobs, master key) is its owner's alone."""
    data.mkdir(parents=True, exist_ok=True, mode=0o700)
    if data.stat().st_uid == os.getuid():
        data.chmod(0o700)


def provide_state(request: Request[Any, Any, Any]) -> ServerState:
    """The running server's state, injected into handlers as `tether`. (Asking for `State`
    instead made Litestar build a copy of the application state for every request.)"""
    return request.app.state.tether  # type: ignore[no-any-return]


def create_app(
    settings: Settings | None = None, extra_handlers: list[Any] | None = None
) -> Litestar:
    """Build the Tether cloud application. `extra_handlers` mounts more routes under /api/v1."""
    settings = settings or Settings.load()

    @contextlib.asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        private_folder(settings.data)
        private_database(settings.resolved_database_url)
        sealer = Sealer(master_key(settings.master_key, settings.data))
        blobs = open_blobs(settings)
        await blobs.ready()
        reclaimed = await asyncio.to_thread(blobs.reclaim)
        if reclaimed:
            logger.info("removed %d temporary files of stopped servers", reclaimed)
        engine = create_engine(
            settings.resolved_database_url, settings.database_pool_size, settings.database_wait
        )
        reader = Reader(
            engine,
            settings.database_pool_size,
            settings.read_pool_size,
            settings.read_timeout,
            settings.database_wait,
        )
        try:
            key, admin = await prepare(engine, settings, sealer)
            app.state.tether = ServerState(
                settings=settings,
                engine=engine,
                reader=reader,
                tokens=AccessTokens(key, settings.access_token_ttl),
                blobs=blobs,
                limiter=LoginLimiter(
                    engine,
                    settings.login_max_failures,
                    settings.login_window,
                    settings.login_max_per_address,
                ),
                revocations=Revocations(engine, keep=settings.access_token_ttl + 60),
                seen=Seen(engine),
                sealer=sealer,
                large_bodies=asyncio.Semaphore(settings.max_large_bodies),
            )
            if admin is not None:
                _announce(admin, settings)
            async with _background(app.state.tether):
                yield
        finally:
            await reader.dispose()
            await engine.dispose()
            blobs.close()

    from tether.server.problems import problem_response

    api = Router(
        API_PREFIX,
        route_handlers=[
            health,
            signin.router,
            sessions.router,
            users.router,
            pairing.router,
            pairing_approval.router,
            oauth.router,
            kinds.build_router(),
            data.router,
            ingest.router,
            queries.router,
            tree.router,
            tasks.router,
            file_sync.router,
            content.router,
            packages.router,
            deployments.router,
            checks.router,
            installed.router,
            journal.router,
            command_routes.router,
            twin_routes.router,
            realtime,
            *(extra_handlers or []),
        ],
        guards=[authorize, checked],
    )
    app = Litestar(
        route_handlers=[api, console_pages.router, front.asset],
        template_config=console.templates(),
        lifespan=[lifespan],
        exception_handlers={Exception: problem_response},
        middleware=[
            RefuseNul(),
            DefineMiddleware(
                AuthenticationMiddleware, exclude=[f"^{API_PREFIX}/(openapi\\.json|docs)"]
            ),
        ],
        request_max_body_size=MAX_JSON_BODY,
        response_headers=[
            ResponseHeader(name="X-Frame-Options", value="DENY"),
            ResponseHeader(name="Content-Security-Policy", value="frame-ancestors 'none'"),
        ],
        openapi_config=OpenAPIConfig(
            title="Tether",
            version=__version__,
            path=API_PREFIX,
            render_plugins=[CompletedJsonRender(), front.api_docs("/docs")],
        ),
        logging_config=None,
        request_class=TetherRequest,
        dependencies={"tether": Provide(provide_state, sync_to_thread=False)},
        debug=False,
    )
    return app


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """How `tether serve` (and the test server) runs uvicorn for these settings."""
    return {
        "host": settings.host,
        "port": settings.port,
        "log_level": settings.log_level.lower(),
        "access_log": settings.access_log,
        "ws_per_message_deflate": settings.realtime_compression,
        "proxy_headers": True,
        "forwarded_allow_ips": settings.forwarded_allow_ips,
    }
