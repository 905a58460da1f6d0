"""What a browser finds: a landing page at `/`, and API docs whose every script, style and
icon the server itself serves (nothing from a CDN, so they work offline)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import httpx

from tests.conftest import RunningServer

ROOT = Path(__file__).resolve().parents[2]


def test_the_root_is_a_page_not_a_404(server: RunningServer) -> None:
    page = httpx.get(f"{server.url}/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert 'href="/api/v1/docs"' in page.text
    assert f"tether login {server.url}" in page.text
    asked = httpx.get(f"{server.url}/", headers={"Accept": "application/json"}).json()
    assert asked["docs"] == "/api/v1/docs"


def test_the_api_docs_load_everything_from_this_server(server: RunningServer) -> None:
    docs = httpx.get(f"{server.url}/api/v1/docs")
    assert docs.status_code == 200
    assert docs.headers["X-Frame-Options"] == "DENY", "no other site may frame the docs"
    assert docs.headers["Content-Security-Policy"] == "frame-ancestors 'none'"
    linked = re.findall(r"""(?:src|href)=["']([^"']+)["']""", docs.text)
    assert linked, docs.text
    assert not [url for url in linked if "//" in url], linked
    kinds = {}
    for url in linked:
        answer = httpx.get(f"{server.url}{url}")
        assert answer.status_code == 200, url
        kinds[url.rsplit(".", 1)[1]] = answer.headers["content-type"]
        if url.endswith((".js", ".css")):
            assert answer.headers["content-encoding"] == "gzip"
            plain = httpx.get(f"{server.url}{url}", headers={"Accept-Encoding": "identity"})
            assert "content-encoding" not in plain.headers
            assert plain.content == answer.content
    assert kinds["js"].startswith("text/javascript") or "javascript" in kinds["js"]
    assert kinds["css"].startswith("text/css")
    assert kinds["png"] == "image/png"
    spec = httpx.get(f"{server.url}/api/v1/openapi.json").json()
    assert set(spec["components"]["securitySchemes"]) == {"bearer", "basic"}
    assert spec["paths"]["/api/v1/devices"]["get"]["security"]


def test_assets_stay_inside_their_folder(server: RunningServer) -> None:
    for path in (
        "/assets/../app.py",
        "/assets/%2e%2e/app.py",
        "/assets/swagger-ui/nope.js",
        "/assets/swagger-ui/LICENSE",
        "/assets/swagger-ui/..%2f..%2fapp.py",
        "/assets/%2fetc%2fpasswd",
    ):
        assert httpx.get(f"{server.url}{path}").status_code == 404, path


def test_vendored_assets_are_the_pinned_ones_with_their_licences() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "vendor.py"), "--check"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Apache License" in (ROOT / "src/tether/server/assets/swagger-ui/LICENSE").read_text()
