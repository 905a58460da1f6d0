"""What the benchmarks share: a free port, a `tether serve` process, the admin's token."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

ADMIN_PASSWORD = "bench-password"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_tether(
    data: Path, port: int, database_url: str | None = None, **settings: str
) -> subprocess.Popen[bytes]:
    """`tether serve` on loopback with a known admin password (and `settings` as TETHER_*
    variables), once it answers its health check."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TETHER_")}
    env |= {"TETHER_ADMIN_PASSWORD": ADMIN_PASSWORD, "TETHER_LOG_LEVEL": "warning"}
    env |= {f"TETHER_{name.upper()}": value for name, value in settings.items()}
    if database_url:
        env["TETHER_DATABASE_URL"] = database_url
    tether = str(Path(sys.executable).parent / "tether")
    process = subprocess.Popen(
        [tether, "serve", "--data", str(data), "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/api/v1/health").status_code == 200:
                return process
        except httpx.HTTPError:
            time.sleep(0.1)
    process.kill()
    raise SystemExit("tether serve did not start")


def admin_token(url: str) -> str:
    """An access token for the first admin of the server at `url`."""
    answer = httpx.post(
        f"{url}/api/v1/auth/token",
        json={
            "grant_type": "password",
            "username": "admin",
            "password": ADMIN_PASSWORD,
            "organization": "main",
        },
    )
    answer.raise_for_status()
    return str(answer.json()["access_token"])


def fresh_database(url: str) -> str:
    """A new empty PostgreSQL database beside the one `url` names (so a run starts clean);
    its URL. `drop_database` removes it."""
    import asyncio
    import secrets

    import asyncpg

    name = f"tether_bench_{secrets.token_hex(4)}"

    async def create() -> None:
        conn = await asyncpg.connect(url.replace("+asyncpg", ""))
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()

    asyncio.run(create())
    return url.rsplit("/", 1)[0] + f"/{name}"


def drop_database(url: str) -> None:
    import asyncio

    import asyncpg

    admin_url, name = url.rsplit("/", 1)

    async def drop() -> None:
        conn = await asyncpg.connect(admin_url.replace("+asyncpg", "") + "/postgres")
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()

    asyncio.run(drop())


async def grow_fleet(database_url: str, more: int, installed: bool = False) -> None:
    """Add `more` devices like the first one, written straight into the database (SQLAlchemy
    async URL), in batches: a fleet in seconds. With `installed`, every device runs one of
    three versions of a package, as if each had said so in an update check."""
    import sqlalchemy as sa

    from tether.server.db.engine import create_engine, new_id, utcnow
    from tether.server.db.tables import installed_packages, resources

    engine = create_engine(database_url)
    async with engine.begin() as conn:
        first = (
            (await conn.execute(sa.select(resources).where(resources.c.kind == "device").limit(1)))
            .one()
            ._asdict()
        )
        for start in range(0, more, 5000):
            batch = [
                first | {"id": new_id(), "name": f"fleet-{start + i}"}
                for i in range(min(5000, more - start))
            ]
            await conn.execute(resources.insert(), batch)
            if installed:
                said = [
                    {
                        "device_id": device["id"],
                        "reference": "com.acme.player",
                        "version": f"1.{n % 3}.0",
                        "org_id": first["org_id"],
                        "updated_at": utcnow(),
                    }
                    for n, device in enumerate(batch)
                ]
                await conn.execute(installed_packages.insert(), said)
    await engine.dispose()
