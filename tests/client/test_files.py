"""Files through the SDK against the real server, on both back ends: streamed upload and
download, ranges and resume, listing, tasks, sync both ways, and the path wall."""

from __future__ import annotations

import hashlib
import io
import os
import random
from pathlib import Path
from typing import Any

import httpx
import pytest

import tether
from tests.conftest import RunningServer, Tenant
from tether import _paths as tether_paths

pytestmark = pytest.mark.blobs


def blob(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


def test_put_get_info_and_versions(client: tether.Client, tmp_path: Path) -> None:
    data = blob(3 * 1024 * 1024 + 17, 1)
    source = tmp_path / "report.bin"
    source.write_bytes(data)
    seen: list[tuple[int, int | None]] = []
    info = client.files.put(
        source, "/docs/2026/report.bin", progress=lambda d, t: seen.append((d, t))
    )
    assert (info["path"], info["size"], info["is_dir"]) == (
        "/docs/2026/report.bin",
        len(data),
        False,
    )
    assert info["sha256"] == hashlib.sha256(data).hexdigest()
    assert seen[-1] == (len(data), len(data))
    assert client.files.info("/docs")["is_dir"] is True
    out = client.files.get("docs/2026/report.bin", tmp_path / "copy.bin")
    assert out.read_bytes() == data
    client.files.put(io.BytesIO(b"v2"), "/docs/2026/report.bin")
    assert client.files.read("/docs/2026/report.bin") == b"v2"
    client.files.put(("notes.txt", io.BytesIO(b"hello")), "/notes.txt")
    assert client.files.info("/notes.txt")["mime"] == "text/plain"


def test_ranges_and_resume(client: tether.Client, server: RunningServer, tmp_path: Path) -> None:
    data = blob(20 * 1024 * 1024 + 5, 2)
    client.files.put(io.BytesIO(data), "/big.bin")
    token = client.get_auth().token
    url = f"{server.url}/api/v1/files/data/big.bin"
    headers = {"Authorization": f"Bearer {token}"}
    part = httpx.get(url, headers=headers | {"Range": "bytes=10-19"})
    assert (part.status_code, part.content) == (206, data[10:20])
    assert part.headers["content-range"] == f"bytes 10-19/{len(data)}"
    tail = httpx.get(url, headers=headers | {"Range": "bytes=-5"})
    assert tail.content == data[-5:]
    assert httpx.get(url, headers=headers | {"Range": f"bytes={len(data)}-"}).status_code == 416
    sha = hashlib.sha256(data).hexdigest()
    partial = tmp_path / f".big.bin.{sha[:16]}.part"
    partial.write_bytes(data[: 9 * 1024 * 1024])
    moved: list[int] = []
    client.files.get("/big.bin", tmp_path / "big.bin", progress=lambda d, t: moved.append(d))
    assert (tmp_path / "big.bin").read_bytes() == data
    assert moved[0] > 9 * 1024 * 1024
    assert not partial.exists()
    (tmp_path / f".again.bin.{sha[:16]}.part").write_bytes(b"garbage that does not match")
    with pytest.raises(tether.ChecksumError):
        client.files.get("/big.bin", tmp_path / "again.bin")
    assert not (tmp_path / "again.bin").exists()


def test_listing_folders_and_tasks(client: tether.Client) -> None:
    for name in ("b.txt", "a.txt", "c.txt"):
        client.files.put(io.BytesIO(name.encode()), f"/dir/{name}")
    client.files.mkdir("/dir/sub/deeper")
    assert [e["name"] for e in client.files.ls("/dir")] == ["a.txt", "b.txt", "c.txt", "sub"]
    assert [e["name"] for e in client.files.ls()] == ["dir"]
    page = client.get("files/list/dir", {"limit": 2})
    assert (page["total"], len(page["results"]), bool(page["next"])) == (4, 2, True)
    copy = client.files.cp("/dir", "/copy").wait()
    assert copy.status == "succeeded"
    assert client.files.read("/copy/b.txt") == b"b.txt"
    assert client.files.info("/copy/sub/deeper")["is_dir"] is True
    client.files.mv("/copy/a.txt", "/moved/a.txt").wait()
    assert client.files.read("/moved/a.txt") == b"a.txt"
    with pytest.raises(tether.NotFoundError):
        client.files.info("/copy/a.txt")
    client.files.rm("/dir").wait()
    with pytest.raises(tether.NotFoundError):
        client.files.info("/dir/sub")
    assert client.files.read("/copy/b.txt") == b"b.txt"
    with pytest.raises(tether.ConflictError):
        client.files.cp("/copy", "/moved")
    with pytest.raises(tether.ValidationError):
        client.files.mv("/copy", "/copy/inside")
    with pytest.raises(tether.NotFoundError):
        client.files.rm("/nothing")
    with pytest.raises(tether.ConflictError):
        client.files.put(io.BytesIO(b"x"), "/copy")
    with pytest.raises(tether.ConflictError):
        client.files.put(io.BytesIO(b"x"), "/copy/b.txt/inside")


def test_sync_up_and_down_send_only_deltas(client: tether.Client, tmp_path: Path) -> None:
    old = blob(2 * 1024 * 1024, 3)
    new = bytearray(old)
    new[100_000:100_100] = b"x" * 100
    new[1_500_000:1_500_000] = b"inserted"
    local = tmp_path / "data.bin"
    local.write_bytes(old)
    first = client.files.sync_up(local, "/sync/data.bin")
    assert first["sent"] == len(old)
    local.write_bytes(new)
    second = client.files.sync_up(local, "/sync/data.bin")
    assert second["sha256"] == hashlib.sha256(new).hexdigest()
    assert second["sent"] < len(new) // 20
    assert client.files.read("/sync/data.bin") == bytes(new)
    mirror = tmp_path / "mirror.bin"
    client.files.sync_down("/sync/data.bin", mirror)
    assert mirror.read_bytes() == bytes(new)
    mirror.write_bytes(old)
    client.files.sync_down("/sync/data.bin", mirror)
    assert mirror.read_bytes() == bytes(new)


def test_corrupt_deltas_and_signatures_change_nothing(client: tether.Client) -> None:
    client.files.put(io.BytesIO(b"original" * 1000), "/keep.bin")
    sha = client.files.info("/keep.bin")["sha256"]
    with pytest.raises(tether.ValidationError) as caught:
        client.request("PUT", "files/patch/keep.bin", params={"basis": sha}, content=b"rubbish")
    assert caught.value.code == "bad_delta"
    with pytest.raises(tether.ConflictError):
        client.request("PUT", "files/patch/keep.bin", params={"basis": "0" * 64}, content=b"x")
    with pytest.raises(tether.ValidationError) as bad_sig:
        client.request("POST", "files/delta/keep.bin", content=b"\x72\x73\x01\x47trunc")
    assert bad_sig.value.code == "bad_signature"
    assert client.files.read("/keep.bin") == b"original" * 1000


TRAVERSALS = [
    "../etc/passwd",
    "a/../../b",
    "./a",
    "a/./b",
    "a\\..\\b",
    "name\x00.txt",
    "x" * 256,
    "/".join(["d"] * 600),
    "..",
]
ENCODED = ["a%00b", "%2e%2e/secret", "a/%2E%2E/%2e%2e/b", "x%5C..%5Cy"]


def test_paths_cannot_escape(client: tether.Client, server: RunningServer, tmp_path: Path) -> None:
    client.files.put(io.BytesIO(b"mine"), "/inside.txt")
    token = client.get_auth().token
    headers = {"Authorization": f"Bearer {token}"}
    for attempt in TRAVERSALS:
        with pytest.raises(ValueError, match=r"path|name"):
            client.files.put(io.BytesIO(b"x"), attempt)
    for attempt in [*TRAVERSALS, *ENCODED]:
        raw = attempt.replace("\x00", "%00")
        response = httpx.put(f"{server.url}/api/v1/files/data/{raw}", content=b"x", headers=headers)
        assert response.status_code < 500, attempt
        if response.is_success:  # the client resolved the dots itself: a plain name inside
            stored = response.json()["path"]
            assert stored == tether_paths.clean_path(stored), attempt
    for entry in client.files.ls():
        assert ".." not in entry["path"].split("/")
    data = Path(server.data)
    assert not any(p.name == "passwd" for p in data.rglob("*"))


def test_other_tenants_files_are_404_even_by_hash(
    client: tether.Client, make_tenant: Any, server: RunningServer
) -> None:
    client.files.put(io.BytesIO(b"secret plans"), "/plans.txt")
    other: Tenant = make_tenant()
    with other.client() as stranger:
        for call in (
            lambda: stranger.files.info("/plans.txt"),
            lambda: stranger.files.read("/plans.txt"),
            lambda: stranger.request("GET", "files/signature/plans.txt", raw=True),
        ):
            with pytest.raises(tether.NotFoundError):
                call()
        assert stranger.files.ls() == []


def test_an_interrupted_upload_leaves_nothing(client: tether.Client, server: RunningServer) -> None:
    token = client.get_auth().token

    def body() -> Any:
        yield b"x" * 1024 * 1024
        raise RuntimeError("the device lost power")

    with pytest.raises(RuntimeError):
        httpx.put(
            f"{server.url}/api/v1/files/data/half.bin",
            content=body(),
            headers={"Authorization": f"Bearer {token}"},
        )
    with pytest.raises(tether.NotFoundError):
        client.files.info("/half.bin")
    data = Path(server.data)
    from tests.conftest import temporary_files, wait_for

    wait_for(lambda: not temporary_files(data), timeout=10, what="the temporary upload removed")


def test_async_files(server: RunningServer, tenant: Tenant, tmp_path: Path) -> None:
    import asyncio

    async def main() -> None:
        async with tenant.async_client() as c:
            await c.files.put(io.BytesIO(b"async bytes"), "/a/b.txt")
            assert await c.files.read("/a/b.txt") == b"async bytes"
            task = await (await c.files.cp("/a", "/c")).wait()
            assert task.status == "succeeded"
            out = await c.files.get("/c/b.txt", tmp_path / "b.txt")
            assert out.read_bytes() == b"async bytes"

    asyncio.run(main())
    assert os.path.exists(tmp_path / "b.txt")


def test_content_items_get_their_bytes_and_variants(client: tether.Client, tmp_path: Path) -> None:
    item = client.content.create("intro video", {"subtype": "video", "variants": ["720p"]})
    assert item.has_variant("720p")
    with pytest.raises(tether.NotFoundError):
        item.read()
    source = tmp_path / "intro.mp4"
    source.write_bytes(blob(1_200_000, 7))
    stored = item.upload(source)
    assert stored["size"] == 1_200_000
    item.upload(io.BytesIO(b"small"), variant="720p")
    assert item.read() == source.read_bytes()
    assert item.read("720p") == b"small"
    direct = client.request("GET", item.get_variant_url("720p") or "", raw=True)
    assert direct == b"small"
    with pytest.raises(tether.ValidationError):
        item.read("../x")
    client.content.delete(item.id)
    with pytest.raises(tether.NotFoundError):
        client.request("GET", f"content/{item.id}/data", raw=True)
