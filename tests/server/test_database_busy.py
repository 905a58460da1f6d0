"""A database with no connection to spare answers 503 with Retry-After, which the SDK retries,
never 500: the pool's wait ran out (SQLite's one writer held), or PostgreSQL refused one more
connection."""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path

import httpx
import pytest
from sqlalchemy import make_url

from tests.conftest import PG_ADMIN_URL, unavailable
from tests.server.inprocess import ADMIN, BASE, signed_in
from tether.server.app import create_app
from tether.server.settings import Settings

pytestmark = pytest.mark.anyio


def _settings(data: Path, **values: object) -> Settings:
    return Settings.load(
        {"data": data, "admin_username": "admin", "admin_password": "admin-password", **values},
        environ={},
    )


async def test_a_request_that_cannot_get_a_connection_in_time_is_told_to_retry(
    tmp_path: Path,
) -> None:
    async with signed_in(_settings(tmp_path, database_wait=0.2)) as (http, state):
        async with state.engine.begin():
            answer = await http.post("/api/v1/auth/token", json=ADMIN)
        assert answer.status_code == 503, answer.text
        assert answer.headers["Retry-After"] == "1"
        assert answer.json()["code"] == "unavailable"
        assert (await http.post("/api/v1/auth/token", json=ADMIN)).status_code == 200


async def test_postgresql_out_of_connections_answers_503_not_500(tmp_path: Path) -> None:
    import asyncpg

    role = f"tether_busy_{secrets.token_hex(4)}"
    try:
        admin = await asyncpg.connect(PG_ADMIN_URL, timeout=5)
    except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
        unavailable(f"PostgreSQL is not reachable at {PG_ADMIN_URL}: {exc}")
    try:
        await admin.execute(f'CREATE ROLE "{role}" LOGIN CONNECTION LIMIT 3')
        await admin.execute(f'CREATE DATABASE "{role}" OWNER "{role}"')
        url = make_url(PG_ADMIN_URL).set(username=role, database=role).render_as_string()
        app = create_app(_settings(tmp_path, database_url=url, login_max_failures=1000))
        transport = httpx.ASGITransport(app=app)
        async with app.lifespan(), httpx.AsyncClient(transport=transport, base_url=BASE) as http:
            answers = await asyncio.gather(
                *(http.post("/api/v1/auth/token", json=ADMIN) for _ in range(30))
            )
        statuses = {a.status_code for a in answers}
        assert statuses <= {200, 503}, [a.text for a in answers if a.status_code not in (200, 503)]
        assert 503 in statuses
        assert all(a.headers["Retry-After"] == "1" for a in answers if a.status_code == 503)
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{role}" WITH (FORCE)')
        await admin.execute(f'DROP ROLE IF EXISTS "{role}"')
        await admin.close()
