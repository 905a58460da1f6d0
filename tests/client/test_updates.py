"""Software updates end to end against the real server, on both back ends: publish, deploy by
rules and stable percentage, check, verified and resumable download, signatures, reports and
the failure-rate abort."""

from __future__ import annotations

import asyncio
import hashlib
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

import tether
from tests.conftest import RunningServer, Tenant, rewrite_blob
from tests.proxy import cutting_proxy
from tether import Package, SigningKey

pytestmark = pytest.mark.blobs


def blob(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


@pytest.fixture
def downloads(tmp_path: Path) -> Path:
    folder = tmp_path / "downloads"
    folder.mkdir()
    return folder


@pytest.fixture
def admin(tenant: Tenant) -> Iterator[tether.Client]:
    with tenant.client() as c:
        yield c


def new_device(admin: tether.Client, **document: Any) -> dict[str, Any]:
    return admin.post("devices", {"name": "d", "document": document})  # type: ignore[no-any-return]


def device_client(server: RunningServer, device: dict[str, Any], **kwargs: Any) -> tether.Client:
    return tether.Client(
        kwargs.pop("url", server.url),
        device_id=device["id"],
        device_secret=device["secret"],
        **kwargs,
    )


def publish(admin: tether.Client, reference: str, version: str, data: bytes, **kw: Any) -> Any:
    return admin.updates.publish(reference, version, ("app.bin", _io(data)), **kw)


def _io(data: bytes) -> Any:
    import io

    return io.BytesIO(data)


def test_publish_check_download_report(
    server: RunningServer, admin: tether.Client, downloads: Path
) -> None:
    old, new = blob(1000, 1), blob(3 * 1024 * 1024 + 5, 2)
    seen: list[tuple[int, int | None]] = []
    published = admin.updates.publish(
        "com.acme.app",
        "1.2",
        ("app.tar", _io(new)),
        metadata={"notes": "faster"},
        progress=lambda d, t: seen.append((d, t)),
    )
    assert (published["version"], published["size"], published["filename"]) == (
        "1.2.0",
        len(new),
        "app.tar",
    )
    assert published["sha256"] == hashlib.sha256(new).hexdigest()
    assert seen[-1] == (len(new), len(new))
    publish(admin, "com.acme.app", "1.0.0", old)
    deployment = admin.updates.deploy("com.acme.app", "1.2.0")
    device = new_device(admin)
    with device_client(server, device) as dc:
        first = dc.updates.check([], {"region": "eu"})
        assert [p.version for p in first.available] == ["1.2.0"]
        assert first.changed == first.unchanged == first.unavailable == []
        offer = first.available[0]
        assert (offer.filename, offer.size, offer.metadata) == (
            "app.tar",
            len(new),
            {"notes": "faster"},
        )
        done: list[int] = []
        path = offer.download(downloads, progress=lambda d, t: done.append(d))
        assert path.parent == downloads
        assert path.name == f"{offer.sha256[:12]}_app.tar"
        assert path.read_bytes() == new
        assert done[-1] == len(new)
        assert sorted(p.name for p in downloads.iterdir()) == [path.name]
        offer.report("installed")

        installed = [Package("com.acme.app", "1.2.0"), Package("gone.pkg", "3.0.0")]
        again = dc.updates.check(installed)
        assert again.available == again.changed == []
        assert again.unchanged == [Package("com.acme.app", "1.2.0")]
        assert again.unavailable == ["gone.pkg"]
        changed = dc.updates.check([Package("com.acme.app", "0.9.0")]).changed
        assert [(p.version, p.installed_version) for p in changed] == [("1.2.0", "0.9.0")]
    assert deployment.refresh().counts == {"downloading": 0, "installed": 1, "failed": 0}


def test_rules_select_devices_by_properties(admin: tether.Client) -> None:
    publish(admin, "fw", "2.0.0", b"fw2")
    admin.updates.deploy(
        "fw",
        "2.0.0",
        rules=[
            {"property": "region", "in": ["eu", "us"]},
            {"property": "model", "equals": "x1"},
            {"property": "firmware", "version": ">=1.2,<2"},
            {"property": "lab", "exists": False},
        ],
    )
    device = new_device(admin, model="x1")

    def gets(**props: Any) -> bool:
        answer = admin.updates.check([], props, device_id=device["id"])
        return [p.version for p in answer.available] == ["2.0.0"]

    assert gets(region="eu", firmware="1.4.0")
    assert gets(region="us", firmware="1.2")
    assert not gets(region="asia", firmware="1.4.0")
    assert not gets(region="eu", firmware="2.0.0")
    assert not gets(region="eu", firmware="not-a-version")
    assert not gets(region="eu", firmware="1.4.0", lab=True)
    assert not gets(region="eu", firmware="1.4.0", model="x2")


def test_rollout_10_then_50_percent_of_200_devices_keeps_the_first(admin: tether.Client) -> None:
    publish(admin, "fw", "1.0.0", b"one")
    devices = [new_device(admin)["id"] for _ in range(200)]
    deployment = admin.updates.deploy("fw", "1.0.0", percentage=10)

    def reached() -> set[str]:
        return {d for d in devices if admin.updates.check([], device_id=d).available}

    first = reached()
    assert 5 <= len(first) <= 40
    assert reached() == first
    deployment.update(percentage=50)
    second = reached()
    assert first < second
    assert 60 <= len(second) <= 140


def test_pause_keeps_devices_that_started_and_abort_falls_back(
    server: RunningServer, admin: tether.Client, downloads: Path
) -> None:
    publish(admin, "fw", "1.0.0", b"one")
    publish(admin, "fw", "2.0.0", b"two")
    admin.updates.deploy("fw", "1.0.0")
    newer = admin.updates.deploy("fw", "2.0.0")
    started, fresh, done = (new_device(admin) for _ in range(3))

    def offered(device: dict[str, Any], installed: tuple[Package, ...] = ()) -> list[str]:
        answer = admin.updates.check(installed, device_id=device["id"])
        return [p.version for p in answer.available + answer.changed] + [
            f"={p.version}" for p in answer.unchanged
        ]

    assert offered(fresh) == ["2.0.0"]
    admin.updates.report("fw", "2.0.0", "downloading", device_id=started["id"])
    assert newer.pause().state == "paused"
    assert offered(fresh) == ["1.0.0"]
    assert offered(started) == ["2.0.0"]
    assert offered(done, (Package("fw", "2.0.0"),)) == ["=2.0.0"]
    assert newer.resume().state == "active"
    assert offered(fresh) == ["2.0.0"]
    newer.abort()
    assert offered(started) == ["1.0.0"]
    with pytest.raises(tether.ConflictError):
        newer.resume()
    with device_client(server, done) as dc:
        back = dc.updates.check([Package("fw", "2.0.0")]).changed[0]
        with pytest.raises(tether.DowngradeError):
            back.download(downloads)
        assert list(downloads.iterdir()) == []
        assert back.download(downloads, allow_downgrade=True).read_bytes() == b"one"


def test_failure_rate_aborts_the_deployment(admin: tether.Client) -> None:
    publish(admin, "fw", "1.0.0", b"one")
    deployment = admin.updates.deploy("fw", "1.0.0", failure_threshold=0.5, min_reports=4)
    devices = [new_device(admin)["id"] for _ in range(4)]
    outcomes = ["installed", "failed", "installed", "failed"]
    states = [
        admin.updates.report("fw", "1.0.0", s, "flash error", device_id=d)["deployment_state"]
        for d, s in zip(devices, outcomes, strict=True)
    ]
    assert states == ["active", "active", "active", "aborted"]
    deployment.refresh()
    assert deployment.state == "aborted"
    assert deployment.counts == {"downloading": 0, "installed": 2, "failed": 2}
    assert admin.updates.check([], device_id=devices[0]).available == []


def test_failure_rate_is_decided_on_the_success_that_reaches_min_reports(
    admin: tether.Client,
) -> None:
    publish(admin, "fw", "1.0.0", b"one")
    admin.updates.deploy("fw", "1.0.0", failure_threshold=0.3, min_reports=2)
    failed, succeeded = new_device(admin)["id"], new_device(admin)["id"]
    first = admin.updates.report("fw", "1.0.0", "failed", "flash error", device_id=failed)
    assert first["deployment_state"] == "active"
    second = admin.updates.report("fw", "1.0.0", "installed", device_id=succeeded)
    assert second["deployment_state"] == "aborted"


def test_server_held_key_signs_and_the_device_verifies(
    server: RunningServer, admin: tether.Client, downloads: Path
) -> None:
    key = admin.post("packages/signing-key", {"generate": True})
    assert key["server_held"] is True
    publish(admin, "fw", "1.0.0", b"signed bytes")
    admin.updates.deploy("fw", "1.0.0")
    device = new_device(admin)
    with device_client(server, device, update_key=key["public_key"]) as dc:
        offer = dc.updates.check().available[0]
        assert offer.signature
        assert offer.download(downloads / "fw.bin").read_bytes() == b"signed bytes"
    stranger = SigningKey.generate().public_key
    with device_client(server, device, update_key=stranger) as dc:
        offer = dc.updates.check().available[0]
        with pytest.raises(tether.ChecksumError, match="signature"):
            offer.download(downloads / "other.bin")
    assert not (downloads / "other.bin").exists()
    assert [p.name for p in downloads.iterdir()] == ["fw.bin"]


def test_operator_held_key_signature_is_required_and_checked(
    server: RunningServer, admin: tether.Client, downloads: Path
) -> None:
    key, other = SigningKey.generate(), SigningKey.generate()
    out = admin.post("packages/signing-key", {"public_key": key.public_key})
    assert out == {**out, "public_key": key.public_key, "server_held": False}
    with pytest.raises(tether.ValidationError) as caught:
        publish(admin, "fw", "1.0.0", b"x")
    assert caught.value.code == "signature_required"
    with pytest.raises(tether.ValidationError) as caught:
        publish(admin, "fw", "1.0.0", b"x", signing_key=other)
    assert caught.value.code == "bad_signature"
    assert admin.updates.versions("fw") == []
    publish(admin, "fw", "1.0.0", b"x", signing_key=key)
    admin.updates.deploy("fw", "1.0.0")
    with device_client(server, new_device(admin), update_key=key.public_key) as dc:
        assert dc.updates.check().available[0].download(downloads / "a").read_bytes() == b"x"
    key_file = key.save(downloads.parent / "key.pem")
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert SigningKey.load(key_file).public_key == key.public_key


def test_tampered_blobs_are_refused_and_leave_nothing(
    server: RunningServer, admin: tether.Client, downloads: Path
) -> None:
    for i in range(100):
        published = publish(admin, f"pkg{i}", "1.0.0", blob(2000, 1000 + i))
        admin.updates.deploy(f"pkg{i}", "1.0.0")

        def tamper(data: bytes, at: int = i * 7) -> bytes:
            return data[:at] + bytes([data[at] ^ 0x01]) + data[at + 1 :]

        rewrite_blob(server, published["sha256"], tamper)
    out = downloads
    with device_client(server, new_device(admin)) as dc:
        offers = dc.updates.check().available
        assert len(offers) == 100
        refused = 0
        for offer in offers:
            with pytest.raises(tether.ChecksumError):
                offer.download(out)
            refused += 1
    assert refused == 100
    assert list(out.iterdir()) == []


def test_a_cut_transfer_resumes_with_a_range_request(
    server: RunningServer, admin: tether.Client, downloads: Path
) -> None:
    data = blob(20 * 1024 * 1024, 7)
    publish(admin, "big", "1.0.0", data)
    admin.updates.deploy("big", "1.0.0")
    device = new_device(admin)
    port = urlsplit(server.url).port
    assert port is not None
    with cutting_proxy(port) as proxy:
        no_retries = tether.Retries(total=0)
        with device_client(server, device, url=proxy.url, retries=no_retries) as dc:
            offer = dc.updates.check().available[0]
            assert offer.url.startswith(f"{proxy.url}/api/v1/updates/download/")
            proxy.cut_after(12 * 1024 * 1024)
            with pytest.raises(tether.DownloadError) as caught:
                offer.download(downloads)
            partial = caught.value.partial
            assert proxy.cuts == 1
            assert 0 < partial.stat().st_size < len(data)
            kept = partial.stat().st_size
        before = proxy.received
        with device_client(server, device, url=proxy.url) as again:
            path = again.updates.check().available[0].download(downloads)
        assert path.read_bytes() == data
        assert not partial.exists()
        assert proxy.received - before < len(data) - kept + 1024 * 1024


def test_devices_cannot_fetch_what_they_were_not_offered(
    server: RunningServer, admin: tether.Client, make_tenant: Any
) -> None:
    publish(admin, "fw", "1.0.0", b"for the eu only")
    admin.updates.deploy("fw", "1.0.0", rules=[{"property": "region", "equals": "eu"}])
    eu, us = new_device(admin), new_device(admin)
    with device_client(server, eu) as e, device_client(server, us) as u:
        offer = e.updates.check([], {"region": "eu"}).available[0]
        assert u.updates.check([], {"region": "us"}).available == []
        version_id = offer.url.split("/download/")[1].split("?")[0]
        for url in (offer.url, f"updates/download/{version_id}", offer.url + "0"):
            with pytest.raises(tether.NotFoundError):
                u.request("GET", url, raw=True)
        assert e.request("GET", offer.url, raw=True) == b"for the eu only"
        with pytest.raises(tether.PermissionDeniedError):
            u.get("packages")
        with pytest.raises(tether.PermissionDeniedError):
            u.updates.check([], device_id=eu["id"])
    with make_tenant().client() as other:
        with pytest.raises(tether.NotFoundError):
            other.request("GET", f"updates/download/{version_id}", raw=True)
        with pytest.raises(tether.NotFoundError):
            other.updates.check([], device_id=eu["id"])


def test_bad_input_is_refused_and_changes_nothing(admin: tether.Client) -> None:
    publish(admin, "fw", "1.0.0", b"one")
    cases: list[tuple[Any, str]] = [
        (lambda: publish(admin, "fw", "not.a.version", b"x"), "invalid_version"),
        (lambda: publish(admin, "-bad", "1.0.0", b"x"), "invalid_reference"),
        (lambda: publish(admin, "fw", "1.0.0", b"again"), "version_exists"),
        (lambda: admin.updates.deploy("fw", "1.0.0", rules=[{"property": "a"}]), "invalid_rule"),
        (
            lambda: admin.updates.deploy(
                "fw", "1.0.0", rules=[{"property": "a", "equals": 1, "exists": True}]
            ),
            "invalid_rule",
        ),
        (
            lambda: admin.updates.deploy(
                "fw", "1.0.0", rules=[{"property": "a", "version": "~>1"}]
            ),
            "invalid_rule",
        ),
        (lambda: admin.updates.deploy("fw", "1.0.0", percentage=150), "invalid"),
        (
            lambda: admin.updates.deploy("fw", "1.0.0", rules=[{"property": "a", "eq": 1}]),
            "invalid",
        ),
    ]
    for call, code in cases:
        with pytest.raises((tether.ValidationError, tether.ConflictError)) as caught:
            call()
        assert caught.value.code == code, caught.value
    with pytest.raises(tether.NotFoundError):
        admin.updates.deploy("nope", "1.0.0")
    assert [v["version"] for v in admin.updates.versions()] == ["1.0.0"]
    assert admin.get("deployments")["total"] == 0
    with pytest.raises(ValueError, match="state"):
        admin.updates.report("fw", "1.0.0", "exploded")


def test_a_version_in_use_cannot_be_deleted(admin: tether.Client) -> None:
    publish(admin, "fw", "1.0.0", b"one")
    deployment = admin.updates.deploy("fw", "1.0.0")
    with pytest.raises(tether.ConflictError):
        admin.delete("packages/fw/versions/1.0.0")
    deployment.abort()
    admin.delete("packages/fw/versions/1.0.0")
    assert admin.updates.versions() == []
    with pytest.raises(tether.NotFoundError):
        deployment.refresh()


def test_read_only_credentials_may_check(server: RunningServer, admin: tether.Client) -> None:
    publish(admin, "fw", "1.0.0", b"one")
    admin.updates.deploy("fw", "1.0.0")
    device = new_device(admin)
    token = admin.post("tokens", {"name": "ro", "read_only": True})["token"]
    with tether.Client(server.url, token=token) as ro:
        assert [p.version for p in ro.updates.check([], device_id=device["id"]).available] == [
            "1.0.0"
        ]
        with pytest.raises(tether.PermissionDeniedError):
            ro.updates.report("fw", "1.0.0", "installed", device_id=device["id"])


def test_async_twin(server: RunningServer, tenant: Tenant, downloads: Path) -> None:
    async def main() -> None:
        async with tenant.async_client() as admin:
            await admin.updates.publish("fw", "1.0.0", ("fw.bin", _io(b"async bytes")))
            deployment = await admin.updates.deploy("fw", "1.0.0")
            device = await admin.post("devices", {"name": "d"})
            async with tether.AsyncClient(
                server.url, device_id=device["id"], device_secret=device["secret"]
            ) as dc:
                offer = (await dc.updates.check()).available[0]
                path = await offer.download(downloads)
                assert path.read_bytes() == b"async bytes"
                await offer.report("installed")
            assert (await deployment.refresh()).counts["installed"] == 1

    asyncio.run(main())


def test_downloads_honour_range_and_etag(server: RunningServer, admin: tether.Client) -> None:
    data = blob(5000, 3)
    published = publish(admin, "fw", "1.0.0", data)
    token = admin.get_auth().token
    response = httpx.get(
        f"{server.url}/api/v1/packages/fw/versions/1.0.0/data",
        headers={"Authorization": f"Bearer {token}", "Range": "bytes=100-199"},
    )
    assert response.status_code == 206
    assert response.content == data[100:200]
    assert response.headers["etag"] == f'"{published["sha256"]}"'


def test_a_project_device_checks_and_downloads_through_its_project(
    server: RunningServer, admin: tether.Client, downloads: Path
) -> None:
    project = admin.projects.create("field")
    device = admin.post(f"projects/{project.id}/devices", {"name": "in the field"})
    publish(admin, "fw", "1.0.0", b"project firmware")
    admin.updates.deploy("fw", "1.0.0")
    with device_client(server, device) as dc:
        offer = dc.updates.check().available[0]
        assert offer.url.startswith(f"{server.url}/api/v1/projects/{project.id}/updates/download/")
        assert offer.download(downloads).read_bytes() == b"project firmware"
        assert offer.report("installed")["deployment_state"] == "active"
