"""Package storage on the server itself: the upload bound, and blob collection that spares
the bytes of published versions."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import temporary_files
from tests.server.inprocess import signed_in
from tether.server.files.tree import collect_blobs
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
        assert await collect_blobs(tether, idle=0) == 0
        assert await tether.blobs.exists(fits.json()["sha256"])
        await http.delete("/api/v1/packages/fw/versions/1.0.0")
        assert await collect_blobs(tether, idle=0) == 1
        assert not await tether.blobs.exists(fits.json()["sha256"])
