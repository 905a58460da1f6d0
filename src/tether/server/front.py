"""What a browser loads besides the console's pages: the browsable API docs, and the scripts,
styles and images of both, from files inside the package (`assets/`, vendored ones refreshed by
`scripts/vendor.py`), so they work offline and behind a firewall."""

from __future__ import annotations

import gzip
import mimetypes
import re
from pathlib import Path, PurePosixPath
from typing import Any

import anyio
from litestar import Request, Response, get
from litestar.datastructures import CacheControlHeader
from litestar.openapi.plugins import SwaggerRenderPlugin
from litestar.params import FromPath

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
