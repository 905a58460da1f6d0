"""What a browser finds at the server: a page at `/` saying what runs here and where to go,
and the browsable API docs, whose scripts and styles come from files inside the package
(`assets/`, refreshed by `scripts/vendor.py`), so they work offline and behind a firewall."""

from __future__ import annotations

import gzip
import mimetypes
import re
from html import escape
from pathlib import Path, PurePosixPath
from typing import Any

import anyio
from litestar import Request, Response, get
from litestar.datastructures import CacheControlHeader
from litestar.openapi.plugins import SwaggerRenderPlugin
from litestar.params import FromPath

from tether._version import __version__
from tether.server.problems import not_found

ASSETS = Path(__file__).resolve().parent / "assets"
ASSETS_PATH = "/assets"
_SWAGGER = f"{ASSETS_PATH}/swagger-ui"


def api_docs(path: str) -> SwaggerRenderPlugin:
    """Swagger UI at `path`, from the package's own copy (its "Authorize" button takes a bearer
    token, an API token, or a device's id and secret)."""
    return SwaggerRenderPlugin(
        path=path,
        js_url=f"{_SWAGGER}/swagger-ui-bundle.js",
        css_url=f"{_SWAGGER}/swagger-ui.css",
        standalone_preset_js_url=f"{_SWAGGER}/swagger-ui-standalone-preset.js",
        favicon=f"<link rel='icon' type='image/png' href='{_SWAGGER}/favicon-32x32.png'>",
    )


_ASSET_NAME = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9_.-]*(/[A-Za-z0-9_-][A-Za-z0-9_.-]*)*$")
_SHOWN = frozenset({".js", ".css", ".png", ".svg", ".ico"})
_loaded: dict[str, tuple[bytes, bool]] = {}


async def _asset(name: str) -> tuple[bytes, bool] | None:
    """An asset's bytes as stored and whether they are gzipped; read once, then kept (they are
    a few hundred kilobytes in all)."""
    found = _loaded.get(name)
    if found is None:
        for stored, zipped in ((ASSETS / f"{name}.gz", True), (ASSETS / name, False)):
            if await anyio.Path(stored).is_file():
                found = (await anyio.Path(stored).read_bytes(), zipped)
                _loaded[name] = found
                break
    return found


@get(
    f"{ASSETS_PATH}/{{name:path}}",
    opt={"exclude_from_auth": True},
    include_in_schema=False,
    cache_control=CacheControlHeader(max_age=3600, public=True),
)
async def asset(name: FromPath[str], request: Request[Any, Any, Any]) -> Response[bytes]:
    """A script, style or image of the package's assets, gzipped to browsers that take it."""
    name = name.lstrip("/")
    suffix = PurePosixPath(name).suffix
    found = await _asset(name) if _ASSET_NAME.match(name) and suffix in _SHOWN else None
    if found is None:
        raise not_found("asset")
    data, zipped = found
    headers = {"Vary": "Accept-Encoding", "X-Content-Type-Options": "nosniff"}
    if zipped and "gzip" in request.headers.get("accept-encoding", ""):
        headers["Content-Encoding"] = "gzip"
    elif zipped:
        data = gzip.decompress(data)
    media_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
    return Response(data, media_type=media_type, headers=headers)


_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Tether</title>
<link rel="icon" type="image/png" href="{favicon}">
<style>
body {{ font: 16px/1.5 system-ui, sans-serif; max-width: 40rem; margin: 2rem auto;
       padding: 0 1rem; color: #1b1f24; }}
code {{ background: #eef1f4; padding: 0.1rem 0.3rem; border-radius: 3px; }}
</style>
</head>
<body>
<main>
<h1>Tether {version}</h1>
<p>This self-hosted device cloud is running.</p>
<ul>
<li><a href="{api}/docs">API documentation</a> (try calls with "Authorize")</li>
<li><a href="{api}/openapi.json">OpenAPI document</a></li>
<li><a href="{api}/health">Health</a></li>
</ul>
<p>From a shell: <code>tether login {url}</code>, then <code>tether --help</code>.
From Python: <code>tether.Client("{url}", ...)</code>.</p>
</main>
</body>
</html>
"""


@get("/", opt={"exclude_from_auth": True}, include_in_schema=False, media_type="text/html")
async def home(request: Request[Any, Any, Any]) -> Response[Any]:
    """The landing page; JSON for a client that asks for it."""
    url = str(request.base_url).rstrip("/")
    api = "/api/v1"
    if request.accept.best_match(["text/html", "application/json"]) == "application/json":
        return Response(
            {"name": "tether", "version": __version__, "api": api, "docs": f"{api}/docs"},
            media_type="application/json",
        )
    page = _PAGE.format(
        version=escape(__version__),
        api=api,
        url=escape(url),
        favicon=f"{_SWAGGER}/favicon-32x32.png",
    )
    return Response(page, media_type="text/html")
