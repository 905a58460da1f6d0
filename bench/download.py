"""Package download throughput through Tether beside nginx (sendfile on) serving the same file,
and update-check requests/s for a fleet beside a bare Litestar endpoint returning the same
answer (the framework's own limit).

    .venv/bin/python bench/download.py [--size-mib 1024] [--devices 10000] [--seconds 5]

Needs nginx, curl and wrk (apt-get install nginx-light curl wrk). Starts Tether in-process on a
free loopback port (SQLite in a temporary folder, or TETHER_DATABASE_URL) and nginx on another,
publishes a random file of --size-mib as a package, and times single-stream downloads of it by
curl from both (best of 3, to /dev/null). Then it creates --devices devices and 5 packages
deployed to them by rules and percentage, and runs wrk with each request from a random device
(the access token its id and secret got, as the SDK does) against the check endpoint and the
bare one.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from _common import admin_token, drop_database, free_port, fresh_database
from litestar import post
from rest import wrk

from tether.server.app import create_app
from tether.server.settings import Settings

_BARE: dict[str, Any] = {}
NGINX = """
daemon off;
worker_processes 1;
pid {root}/nginx.pid;
error_log {root}/error.log;
events {{ worker_connections 64; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    default_type application/octet-stream;
    client_body_temp_path {root}/tmp;
    proxy_temp_path {root}/tmp;
    fastcgi_temp_path {root}/tmp;
    uwsgi_temp_path {root}/tmp;
    scgi_temp_path {root}/tmp;
    server {{
        listen 127.0.0.1:{port};
        root {files};
    }}
}}
"""


@post(
    "/bench/bare-check", opt={"exclude_from_auth": True}, include_in_schema=False, status_code=200
)
async def bare_check() -> dict[str, Any]:
    return _BARE["check"]  # type: ignore[no-any-return]


def curl_speed(url: str, headers: dict[str, str]) -> float:
    """Bytes/s of one download of `url` by curl, best of 3."""
    command = ["curl", "-s", "-o", "/dev/null", "-w", "%{speed_download} %{http_code}", url]
    for name, value in headers.items():
        command += ["-H", f"{name}: {value}"]
    best = 0.0
    for _ in range(3):
        speed, status = subprocess.run(
            command, capture_output=True, text=True, check=True
        ).stdout.split()
        if status != "200":
            raise SystemExit(f"{url}: HTTP {status}")
        best = max(best, float(speed))
    return best


def start_nginx(root: Path, files: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    (root / "tmp").mkdir(parents=True, exist_ok=True)
    conf = root / "nginx.conf"
    conf.write_text(NGINX.format(root=root, port=port, files=files))
    process = subprocess.Popen(
        ["nginx", "-c", str(conf), "-p", str(root)], stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            httpx.head(f"http://127.0.0.1:{port}/")
            return process, port
        except httpx.HTTPError:
            time.sleep(0.05)
    raise SystemExit("nginx did not start")


def random_file(path: Path, size: int) -> None:
    with path.open("wb") as out:
        left = size
        while left:
            step = min(left, 16 * 1024 * 1024)
            out.write(os.urandom(step))
            left -= step


def basic(user: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{secret}".encode()).decode()


def check_script(path: Path, auths: list[str], body: str) -> Path:
    lua = path / "check.lua"
    entries = ",\n".join(json.dumps(a) for a in auths)
    lua.write_text(
        f"local auths = {{\n{entries}\n}}\n"
        f"local body = {json.dumps(body)}\n"
        "request = function()\n"
        "  local auth = auths[math.random(#auths)]\n"
        "  return wrk.format('POST', nil, {['Authorization'] = auth, "
        "['Content-Type'] = 'application/json'}, body)\n"
        "end\n"
    )
    return lua


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()
    for tool in ("nginx", "curl", "wrk"):
        if not shutil.which(tool):
            sys.exit(f"{tool} is needed: apt-get install nginx-light curl wrk")
    work = Path(tempfile.mkdtemp(prefix="tether-bench-"))
    work.chmod(0o755)  # nginx's workers run as an unprivileged user
    port = free_port()
    database_url = os.environ.get("TETHER_DATABASE_URL")
    if database_url:
        database_url = fresh_database(database_url)
    settings = Settings.load(
        {
            "data": work / "data",
            "database_url": database_url,
            "admin_password": "bench-password",
            "port": port,
            "log_level": "warning",
        }
    )
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(settings, extra_handlers=[bare_check]),
            host="127.0.0.1",
            port=port,
            log_level="warning",
            access_log=False,
        )
    )
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    base = f"http://127.0.0.1:{port}/api/v1"
    admin = httpx.Client(
        base_url=base,
        headers={"Authorization": f"Bearer {admin_token(f'http://127.0.0.1:{port}')}"},
    )
    files = work / "files"
    files.mkdir()
    package = files / "package.bin"
    size = args.size_mib * 1024 * 1024
    random_file(package, size)
    with package.open("rb") as body:
        admin.put(
            "/packages/big/versions/1.0.0",
            content=body,
            params={"filename": "package.bin"},
            timeout=None,
        ).raise_for_status()
    admin.post("/deployments", json={"reference": "big", "version": "1.0.0"}).raise_for_status()
    device = admin.post("/devices", json={"name": "downloader"}).json()
    auth = basic(device["id"], device["secret"])
    offer = httpx.post(f"{base}/updates/check", json={}, headers={"Authorization": auth}).json()[
        "available"
    ][0]
    nginx, nginx_port = start_nginx(work / "nginx", files)
    try:
        tether_speed = curl_speed(f"http://127.0.0.1:{port}{offer['url']}", {"Authorization": auth})
        nginx_speed = curl_speed(f"http://127.0.0.1:{nginx_port}/package.bin", {})
    finally:
        nginx.terminate()
        nginx.wait()
    package.unlink()

    for i in range(5):
        admin.put(f"/packages/app{i}/versions/2.0.0", content=f"app{i}".encode()).raise_for_status()
        rules = [{"property": "region", "in": ["eu", "us"]}] if i % 2 else []
        admin.post(
            "/deployments",
            json={
                "reference": f"app{i}",
                "version": "2.0.0",
                "rules": rules,
                "percentage": 50 + 10 * i,
            },
        ).raise_for_status()
    auths = []
    for i in range(args.devices):
        made = admin.post("/devices", json={"name": f"d{i}", "document": {"model": "x1"}}).json()
        grant = {"grant_type": "device", "device_id": made["id"], "device_secret": made["secret"]}
        token = httpx.post(f"{base}/auth/token", json=grant).json()["access_token"]
        auths.append(f"Bearer {token}")
    body = json.dumps(
        {
            "installed": [{"reference": f"app{i}", "version": "1.0.0"} for i in range(5)],
            "properties": {"region": "eu", "firmware": "1.4.2"},
        }
    )
    _BARE["check"] = httpx.post(
        f"{base}/updates/check",
        content=body,
        headers={"Authorization": auths[0], "Content-Type": "application/json"},
    ).json()
    script = str(check_script(work, auths, body))
    tether_rps = wrk(f"{base}/updates/check", args.seconds, args.connections, None, script)
    bare_rps = wrk(f"{base}/bench/bare-check", args.seconds, args.connections, None, script)

    db = settings.resolved_database_url.split(":")[0]
    print(f"database: {db}; Python {sys.version.split()[0]}; one uvicorn worker in-process")
    print(f"download of {args.size_mib} MiB, single stream, curl to /dev/null, best of 3")
    print(f"{'':<24}{'tether':>14}{'peer':>14}{'ratio':>8}")
    print(
        f"{'download MiB/s (nginx)':<24}{tether_speed / 2**20:>14.0f}"
        f"{nginx_speed / 2**20:>14.0f}{tether_speed / nginx_speed:>8.2f}"
    )
    ratio = tether_rps / bare_rps
    print(
        f"{'check req/s (bare)':<24}{tether_rps:>14.0f}{bare_rps:>14.0f}{ratio:>8.2f}"
        f"   ({args.devices} devices x 5 packages, wrk -c{args.connections})"
    )
    print(
        json.dumps(
            {
                "download": round(tether_speed / nginx_speed, 3),
                "check": round(tether_rps / bare_rps, 3),
            }
        )
    )
    server.should_exit = True
    shutil.rmtree(work, ignore_errors=True)
    if database_url:
        drop_database(database_url)
    os._exit(0)


if __name__ == "__main__":
    main()
