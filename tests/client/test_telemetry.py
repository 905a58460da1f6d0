"""Telemetry through the SDK against the real server, on both back ends: staging, the outbox,
exactly-once pushes, rejections moved aside, latest values and time-range queries."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import tether
from tests.conftest import RunningServer, Tenant, free_port, wait_for

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z


@pytest.fixture
def device(client: tether.Client) -> dict[str, Any]:
    return client.post("devices", {"name": "sensor"})  # type: ignore[no-any-return]


@pytest.fixture
def device_client(server: RunningServer, device: dict[str, Any]) -> Iterator[tether.Client]:
    with tether.Client(server.url, device_id=device["id"], device_secret=device["secret"]) as c:
        yield c


def telemetry(client: tether.Client, tmp_path: Path, **kwargs: Any) -> tether.Telemetry:
    return tether.Telemetry(client, outbox=tmp_path / "outbox.db", **kwargs)


def count(client: tether.Client, device_id: str, field: str) -> int:
    buckets = client.telemetry.query(field, device=device_id, every=10**9, agg="count")
    return sum(int(r.value) for r in buckets)


def test_stage_commit_push_and_read_back(device_client: tether.Client, tmp_path: Path) -> None:
    t = telemetry(device_client, tmp_path)
    t.add_value("temp", 20.5)
    t.add_value("temp", 21.5)
    t.add_value("count", 7)
    t.add_value("on", True)
    t.add_value("mode", "eco")
    t.add_value("pos", {"x": 1, "y": [2, 3]})
    assert t.staged["temp"] == 21.5
    assert t.commit(ts=T0) == 5
    assert t.staged == {}
    assert t.commit() == 0
    assert t.pending == 1
    assert t.push() == 1
    assert t.pending == 0
    latest = t.latest()
    assert {k: v.value for k, v in latest.items()} == {
        "temp": 21.5,
        "count": 7,
        "on": True,
        "mode": "eco",
        "pos": {"x": 1, "y": [2, 3]},
    }
    assert latest["temp"].ts == dt.datetime.fromtimestamp(T0, dt.UTC)
    assert isinstance(latest["count"].value, int)
    assert t.latest(["temp"]).keys() == {"temp"}
    t.add_value("temp", 22.0)
    assert t.commit_and_push(ts=T0 + 60) == 1
    assert [r.value for r in t.query("temp")] == [21.5, 22.0]
    t.close()


def test_bad_values_are_refused_when_staged(device_client: tether.Client, tmp_path: Path) -> None:
    t = telemetry(device_client, tmp_path)
    for field, value in [
        ("", 1),
        ("has space", 1),
        ("x" * 65, 1),
        ("nan", float("nan")),
        ("long", "x" * 1025),
        ("big", {"k": "x" * 5000}),
        ("none", None),
        ("obj", object()),
    ]:
        with pytest.raises(ValueError, match=r"^'.*': "):
            t.add_value(field, value)
    assert t.staged == {}
    t.close()


def test_latest_keeps_the_newest_time_not_the_newest_push(
    device_client: tether.Client, tmp_path: Path
) -> None:
    t = telemetry(device_client, tmp_path)
    t.add_value("temp", 2.0)
    t.commit(ts=T0 + 10)
    t.push()
    t.add_value("temp", 1.0)
    t.commit(ts=T0)
    t.push()
    assert t.latest()["temp"].value == 2.0
    t.close()


def test_a_batch_pushed_twice_is_stored_once(
    device_client: tether.Client, device: dict[str, Any], client: tether.Client
) -> None:
    path = f"devices/{device['id']}/telemetry"
    body = {
        "batch": uuid.uuid4().hex,
        "entries": [{"ts": T0 + i, "values": {"v": i}} for i in range(5)],
    }
    first = device_client.post(path, body)
    again = device_client.post(path, body)
    assert (first["duplicate"], first["points"]) == (False, 5)
    assert (again["duplicate"], again["points"]) == (True, 5)
    assert count(client, device["id"], "v") == 5


def test_the_outbox_outlives_the_process_and_the_network(
    server: RunningServer, device: dict[str, Any], tmp_path: Path, client: tether.Client
) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    retries = tether.Retries(total=0)
    with tether.Client(
        dead, device_id=device["id"], device_secret=device["secret"], retries=retries
    ) as offline:
        t = telemetry(offline, tmp_path)
        for i in range(30):
            t.add_value("n", i)
            t.commit(ts=T0 + i)
        with pytest.raises(tether.PushError) as caught:
            t.push()
        assert caught.value.retained_data is True
        assert isinstance(caught.value.cause, tether.NetworkError)
        assert t.pending == 30
    with tether.Client(
        server.url, device_id=device["id"], device_secret=device["secret"]
    ) as online:
        t = telemetry(online, tmp_path, batch_points=7)
        assert t.pending == 30
        assert t.push() == 30
        assert t.pending == 0
        t.close()
    assert [r.value for r in client.telemetry.query("n", device=device["id"])] == list(range(30))


def test_refused_entries_are_moved_aside_and_can_be_retried(
    device_client: tether.Client, device: dict[str, Any], client: tether.Client, tmp_path: Path
) -> None:
    t = telemetry(device_client, tmp_path)
    far_future = dt.datetime.now(dt.UTC) + dt.timedelta(days=30)
    for ts in (T0, far_future, T0 + 1):
        t.add_value("v", 1)
        t.commit(ts=ts)
    with pytest.raises(tether.PushError) as caught:
        t.push()
    assert caught.value.retained_data is False
    assert caught.value.cause.code == "invalid_telemetry"  # type: ignore[attr-defined]
    [refused] = t.rejected()
    assert refused.ts == far_future.timestamp()
    assert (refused.status, refused.code, refused.values) == (422, "invalid_telemetry", {"v": 1})
    assert t.pending == 2
    assert t.push() == 2
    assert count(client, device["id"], "v") == 2
    assert t.retry_rejected() == 1
    assert t.rejected() == []
    assert t.pending == 1
    t.close()


def test_a_read_only_token_cannot_push_and_the_sdk_says_dropped(
    server: RunningServer, client: tether.Client, device: dict[str, Any], tmp_path: Path
) -> None:
    token = client.post("tokens", {"name": "ro", "read_only": True})["token"]
    with tether.Client(server.url, token=token) as ro:
        t = telemetry(ro, tmp_path, device_id=device["id"])
        t.add_value("v", 1)
        t.commit(ts=T0)
        with pytest.raises(tether.PushError) as caught:
            t.push()
        assert caught.value.retained_data is False
        assert isinstance(caught.value.cause, tether.PermissionDeniedError)
        assert t.pending == 0
        assert len(t.rejected()) == 1
        t.close()
    assert client.telemetry.latest(device=device["id"]) == {}


def test_bad_pushes_are_problems_and_store_nothing(
    device_client: tether.Client, client: tether.Client, device: dict[str, Any]
) -> None:
    path = f"devices/{device['id']}/telemetry"

    def push(entries: Any, batch: str = "b") -> tether.APIError:
        with pytest.raises(tether.APIError) as caught:
            device_client.post(path, {"batch": batch, "entries": entries})
        return caught.value

    assert push([{"ts": "soon", "values": {"v": 1}}]).status == 422
    assert push([{"ts": T0, "values": {"v": None}}]).code == "invalid_telemetry"
    assert push([{"ts": T0, "values": {"v": "x" * 2000}}]).code == "invalid_telemetry"
    assert push([{"ts": T0, "values": {"bad name": 1}}]).code == "invalid_telemetry"
    assert push([{"ts": 12, "values": {"v": 1}}]).code == "invalid_telemetry"
    assert push([{"ts": T0, "values": {}}]).code == "invalid_telemetry"
    assert push([{"ts": T0, "values": {"v": 1}}], batch="no spaces").status in (400, 422)
    many = [{"ts": T0 + i, "values": {"a": 1, "b": 2}} for i in range(5001)]
    too_many = push(many)
    assert (too_many.status, too_many.code) == (413, "too_many_points")
    mixed = push([{"ts": T0, "values": {"v": 1}}, {"ts": T0, "values": {"v": "x" * 2000}}])
    assert mixed.problem["errors"][0]["index"] == 1
    assert client.telemetry.latest(device=device["id"]) == {}
    other = client.post("devices", {"name": "other"})
    with pytest.raises(tether.PermissionDeniedError):
        device_client.post(
            f"devices/{other['id']}/telemetry",
            {"batch": "b", "entries": [{"ts": T0, "values": {"v": 1}}]},
        )
    with pytest.raises(tether.NotFoundError):
        client.post(f"devices/{uuid.uuid4()}/telemetry", {"batch": "b", "entries": []})


def test_too_big_batches_are_split_not_refused(
    device_client: tether.Client, client: tether.Client, device: dict[str, Any], tmp_path: Path
) -> None:
    t = telemetry(device_client, tmp_path, batch_points=50_000)
    for i in range(120):
        for k in range(100):
            t.add_value(f"f{k}", i)
        t.commit(ts=T0 + i)
    assert t.push() == 120
    assert count(client, device["id"], "f99") == 120
    t.close()


def test_queries_raw_paged_and_per_bucket(
    device_client: tether.Client, client: tether.Client, device: dict[str, Any], tmp_path: Path
) -> None:
    t = telemetry(device_client, tmp_path)
    for i in range(12):
        t.add_value("v", i)
        t.add_value("label", f"n{i}")
        t.commit(ts=T0 + i * 10)
    t.push()
    t.close()
    q = client.telemetry.query
    did = device["id"]
    assert [r.value for r in q("v", device=did, since=T0 + 30, until=T0 + 60)] == [3, 4, 5]
    per_minute = q("v", device=did, every="1m")
    assert [r.value for r in per_minute] == [2.5, 8.5]
    assert per_minute[1].ts == dt.datetime.fromtimestamp(T0 + 60, dt.UTC)
    assert [r.value for r in q("v", device=did, every=60, agg="min")] == [0, 6]
    assert [r.value for r in q("v", device=did, every=60, agg="max")] == [5, 11]
    assert [r.value for r in q("v", device=did, every=60, agg="count")] == [6, 6]
    assert [r.value for r in q("label", device=did, every=60, agg="last")] == ["n5", "n11"]
    assert q("label", device=did, every=60, agg="avg") == []
    iso = dt.datetime.fromtimestamp(T0 + 100, dt.UTC).isoformat()
    assert [r.value for r in q("v", device=did, since=iso)] == [10, 11]
    page = client.get(f"devices/{did}/telemetry", {"field": "v", "limit": 5})
    seen = [p["value"] for p in page["points"]]
    while page.get("next"):
        page = client.get(page["next"])
        seen += [p["value"] for p in page["points"]]
    assert seen == list(range(12))
    buckets = client.get(f"devices/{did}/telemetry", {"field": "v", "every": 20, "limit": 2})
    values = [p["value"] for p in buckets["points"]]
    while buckets.get("next"):
        buckets = client.get(buckets["next"])
        values += [p["value"] for p in buckets["points"]]
    assert values == [0.5, 2.5, 4.5, 6.5, 8.5, 10.5]
    for params in (
        {},
        {"field": ["v", "w"]},
        {"field": "v", "agg": "avg"},
        {"field": "v", "every": 60, "agg": "median"},
        {"field": "v", "every": 0},
        {"field": "v", "since": "yesterday"},
        {"field": "v", "limit": 0},
        {"field": "v", "after": "x"},
        {"field": "v", "colour": "red"},
    ):
        with pytest.raises(tether.ValidationError):
            client.get(f"devices/{did}/telemetry", params)


def test_the_outbox_bound(device_client: tether.Client, tmp_path: Path) -> None:
    strict = tether.Telemetry(device_client, outbox=tmp_path / "a.db", max_entries=3)
    for i in range(3):
        strict.add_value("v", i)
        strict.commit()
    strict.add_value("v", 3)
    with pytest.raises(tether.OutboxFullError):
        strict.commit()
    assert strict.pending == 3
    strict.close()
    lenient = tether.Telemetry(
        device_client, outbox=tmp_path / "b.db", max_entries=3, on_full="drop_oldest"
    )
    for i in range(5):
        lenient.add_value("v", i)
        lenient.commit(ts=T0 + i)
    assert lenient.pending == 3
    assert lenient.outbox.dropped == 2
    lenient.push()
    assert [r.value for r in lenient.query("v")] == [2, 3, 4]
    lenient.close()


def test_background_pushing(device_client: tether.Client, tmp_path: Path) -> None:
    t = telemetry(device_client, tmp_path)
    t.start(interval=0.05)
    for i in range(5):
        t.add_value("v", i)
        t.commit(ts=T0 + i)
    wait_for(lambda: t.pending == 0, timeout=20, what="the background push")
    t.stop()
    assert len(t.query("v")) == 5
    t.close()


def test_users_need_a_device_to_commit_or_push(client: tether.Client, tmp_path: Path) -> None:
    t = telemetry(client, tmp_path)
    t.add_value("v", 1)
    with pytest.raises(tether.ConfigurationError, match=r"Telemetry\(client, device_id="):
        t.commit()
    with pytest.raises(tether.ConfigurationError, match=r"Telemetry\(client, device_id="):
        t.push()
    with pytest.raises(tether.ConfigurationError, match="device= on this call"):
        t.latest()
    assert t.staged == {"v": 1}
    t.close()


def test_deleting_a_device_deletes_its_telemetry(
    device_client: tether.Client, client: tether.Client, device: dict[str, Any], tmp_path: Path
) -> None:
    t = telemetry(device_client, tmp_path)
    t.add_value("v", 1)
    t.commit_and_push(ts=T0)
    t.close()
    client.devices.delete(device["id"])
    again = client.post("devices", {"name": "again"})
    with pytest.raises(tether.NotFoundError):
        client.telemetry.latest(device=device["id"])
    assert client.telemetry.latest(device=again["id"]) == {}


def test_async_twin(server: RunningServer, device: dict[str, Any], tmp_path: Path) -> None:
    async def main() -> None:
        async with tether.AsyncClient(
            server.url, device_id=device["id"], device_secret=device["secret"]
        ) as c:
            t = tether.AsyncTelemetry(c, outbox=tmp_path / "async.db")
            t.add_value("v", 1.5)
            assert await t.commit_and_push(ts=T0) == 1
            assert (await t.latest())["v"].value == 1.5
            assert [r.value for r in await t.query("v", every=60)] == [1.5]
            t.start(interval=0.05)
            t.add_value("v", 2.5)
            t.commit(ts=T0 + 1)
            await asyncio.to_thread(wait_for, lambda: t.pending == 0, 20, "the background push")
            await t.close()

    asyncio.run(main())


def test_client_telemetry_uses_the_default_outbox(
    device_client: tether.Client,
    device: dict[str, Any],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    device_client.telemetry.add_value("v", 1)
    device_client.telemetry.commit(ts=T0)
    assert (tmp_path / "data" / "tether" / "outbox" / f"{device['id']}.db").exists()
    assert device_client.telemetry.push() == 1


def test_other_tenants_cannot_read_a_device(make_tenant: Any, device: dict[str, Any]) -> None:
    other: Tenant = make_tenant()
    with other.client() as stranger:
        with pytest.raises(tether.NotFoundError):
            stranger.telemetry.latest(device=device["id"])
        with pytest.raises(tether.NotFoundError):
            stranger.telemetry.query("v", device=device["id"])
