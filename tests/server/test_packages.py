"""Package storage on the server itself: the upload bound, and blob collection that spares
the bytes of published versions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.conftest import temporary_files
from tests.server.inprocess import settings_for, signed_in
from tether.server.files.blobs import collect_blobs
from tether.server.settings import Settings


@pytest.mark.anyio
async def test_an_oversized_package_is_refused_and_leaves_nothing(tmp_path: Path) -> None:
    settings = Settings.load(
        {
            "data": tmp_path,
            "admin_username": "admin",
            "admin_password": "admin-password",
            "max_package_size": 1000,
        },
        environ={},
    )
    async with signed_in(settings) as (http, tether):
        too_big = await http.put("/api/v1/packages/fw/versions/1.0.0", content=b"x" * 1001)
        assert too_big.status_code == 413
        assert too_big.json()["code"] == "too_large"
        assert (await http.get("/api/v1/packages")).json()["total"] == 0
        assert temporary_files(tmp_path) == []
        fits = await http.put("/api/v1/packages/fw/versions/1.0.0", content=b"x" * 1000)
        assert fits.status_code == 201
        assert (
            await collect_blobs(
                tether.engine, tether.reader, tether.blobs, tether.settings.blob_grace, idle=0
            )
            == 0
        )
        assert await tether.blobs.exists(fits.json()["sha256"])
        await http.delete("/api/v1/packages/fw/versions/1.0.0")
        assert (
            await collect_blobs(
                tether.engine, tether.reader, tether.blobs, tether.settings.blob_grace, idle=0
            )
            == 1
        )
        assert not await tether.blobs.exists(fits.json()["sha256"])


@pytest.mark.anyio
async def test_update_checks_write_installed_packages_behind_in_batches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Checks from 40 devices seen for the first time cost no write each: what they said is
    written in one batch, before anything reads it (the counts, the `installed[...]` filter),
    never for a device deleted meanwhile, and at the latest when the server stops."""
    import httpx
    import sqlalchemy as sa

    from tether.server.db.tables import installed_packages
    from tether.server.updates import noted

    monkeypatch.setattr(noted, "FLUSH", 3600.0)
    settings = settings_for(tmp_path)
    async with signed_in(settings) as (http, tether):
        writes: list[str] = []

        def heard(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
            if "installed_packages" in statement and not statement.startswith("SELECT"):
                writes.append(statement)

        sa.event.listen(tether.engine.sync_engine, "before_cursor_execute", heard)
        devices = [
            (await http.post("/api/v1/devices", json={"name": f"d{n}"})).json() for n in range(41)
        ]
        for n, device in enumerate(devices):
            check = await http.post(
                "/api/v1/updates/check",
                json={"installed": [{"reference": "app", "version": f"1.{n % 2}"}]},
                auth=httpx.BasicAuth(device["id"], device["secret"]),
            )
            assert check.status_code == 200, check.text
        assert writes == []
        await http.delete(f"/api/v1/devices/{devices[-1]['id']}")
        counted = (await http.get("/api/v1/updates/installed")).json()
        assert {(c["version"], c["devices"]) for c in counted} == {("1.0", 20), ("1.1", 20)}
        assert len([w for w in writes if w.startswith("INSERT")]) == 1
        found = await http.get("/api/v1/devices", params={"installed[app]": "1.1"})
        assert found.json()["total"] == 20

        late = await http.post(
            "/api/v1/updates/check",
            json={"installed": [{"reference": "fw", "version": "9"}]},
            auth=httpx.BasicAuth(devices[0]["id"], devices[0]["secret"]),
        )
        assert late.status_code == 200
    async with signed_in(settings) as (http, tether), tether.engine.connect() as conn:
        rows = await conn.execute(
            sa.select(installed_packages.c.version).where(
                installed_packages.c.device_id == devices[0]["id"]
            )
        )
        assert rows.scalars().all() == ["9"], "written when the server stopped"
