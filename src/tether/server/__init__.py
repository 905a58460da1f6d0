"""The Tether cloud. Needs the server extra: `pip install 'tether[server]'`.

One package per area; the application and what every area shares sit at the top:

    app.py        the ASGI application, its routes and the lifespan
    settings.py   every setting, declared once      state.py   what the running server holds
    problems.py   the one error shape               inputs.py  the rules every input obeys
    apidoc.py     the OpenAPI document, completed
    db/           tables, engine, reads (pool, time limit), prepared statements, pages, migrations
    identity/     users, tokens, sessions, sign-in, pairing, credentials, scope, the policy
    resources/    the resource kinds (devices, things, locations, ...), data items and feeds
    telemetry/    exactly-once ingest, latest values, time-range queries
    files/        the file tree, its tasks and rsync sync, content bytes, the blob store
    updates/      packages and signing keys, deployments and rules, device checks
    realtime/     the WebSocket hub, the backplane between processes, the event bus
"""

try:
    import litestar  # noqa: F401
    import sqlalchemy  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "The Tether server needs its extra dependencies: pip install 'tether[server]'"
    ) from exc
