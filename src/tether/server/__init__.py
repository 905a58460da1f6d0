"""The Tether cloud. Needs the server extra: `pip install 'tether[server]'`."""

try:
    import litestar  # noqa: F401
    import sqlalchemy  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "The Tether server needs its extra dependencies: pip install 'tether[server]'"
    ) from exc
