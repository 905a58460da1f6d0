"""Blobs in an S3-compatible store: stored once, collected like those on disk, never the ones
an upload has just found already stored."""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path

import obstore

from tests.conftest import S3Server, temporary_files
from tests.server.inprocess import signed_in, task_end
from tether.server.files.blobs import collect_blobs
from tether.server.files.objects import ObjectBlobs
from tether.server.settings import Settings


def s3_settings(tmp_path: Path, s3_server: S3Server, **more: object) -> Settings:
    return Settings.load(
        {
            "data": tmp_path,
            "admin_username": "admin",
            "admin_password": "admin-password",
            **s3_server.settings(f"inprocess-{secrets.token_hex(4)}"),
            **more,
        },
        environ={},
    )


def keys(blobs: ObjectBlobs) -> list[str]:
    return sorted(item["path"] for batch in obstore.list(blobs.store) for item in batch)


def test_same_bytes_are_one_object_and_orphans_are_collected(
    tmp_path: Path, s3_server: S3Server
) -> None:
    async def main() -> None:
        async with signed_in(s3_settings(tmp_path, s3_server)) as (http, state):
            blobs = state.blobs
            assert isinstance(blobs, ObjectBlobs)
            one = (await http.put("/api/v1/files/data/one", content=b"same")).json()["sha256"]
            await http.put("/api/v1/files/data/two", content=b"same")
            lone = (await http.put("/api/v1/files/data/lone", content=b"lonely")).json()["sha256"]
            assert keys(blobs) == sorted(
                [ObjectBlobs.key(one), ObjectBlobs.key(lone), f"reused/{one}"]
            )
            for path in ("/one", "/lone"):
                task = (
                    await http.post("/api/v1/files/tasks", json={"op": "remove", "path": path})
                ).json()
                assert (await task_end(http, task["id"]))["status"] == "succeeded"
            assert (
                await collect_blobs(
                    state.engine, state.reader, state.blobs, state.settings.blob_grace, idle=3600
                )
                == 0
            )
            assert await blobs.exists(lone)
            assert (
                await collect_blobs(
                    state.engine, state.reader, state.blobs, state.settings.blob_grace, idle=0
                )
                == 1
            )
            assert not await blobs.exists(lone)
            assert (await http.get("/api/v1/files/data/two")).content == b"same"
            assert temporary_files(tmp_path) == []

    asyncio.run(main())


def test_a_blob_no_row_records_goes_after_the_grace(tmp_path: Path, s3_server: S3Server) -> None:
    async def main() -> None:
        settings = s3_settings(tmp_path, s3_server, blob_grace=3600)
        async with signed_in(settings) as (_http, state):
            blobs = state.blobs
            assert isinstance(blobs, ObjectBlobs)
            stray = "ab" * 32
            await obstore.put_async(blobs.store, ObjectBlobs.key(stray), b"left by a crash")
            assert (
                await collect_blobs(
                    state.engine, state.reader, state.blobs, state.settings.blob_grace
                )
                == 0
            )
            assert await blobs.exists(stray)
            assert await blobs.remove_if_idle(stray, 0)
            assert not await blobs.exists(stray)

    asyncio.run(main())


def test_a_reused_blob_is_spared_by_the_collector(tmp_path: Path, s3_server: S3Server) -> None:
    async def main() -> None:
        async with signed_in(s3_settings(tmp_path, s3_server)) as (http, state):
            blobs = state.blobs
            assert isinstance(blobs, ObjectBlobs)
            sha = (await http.put("/api/v1/files/data/a", content=b"again")).json()["sha256"]
            await http.put("/api/v1/files/data/b", content=b"again")
            assert not await blobs.remove_if_idle(sha, 3600)
            assert await blobs.exists(sha)

    asyncio.run(main())
