"""A real cluster on loopback: two `tether serve` nodes, each with a data folder of its own, on
one PostgreSQL, one Redis and one S3-compatible store. What one node stores, the other serves;
a broadcast on one is answered from the other; and when a node is killed with SIGKILL, clients
with `failover_urls` carry on and nothing acknowledged is lost."""

from __future__ import annotations

import hashlib
import io
import random
import secrets
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import tether
from tests.conftest import (
    OPERATOR,
    S3Server,
    _drop_postgres_database,
    _postgres_database,
    free_port,
    wait_for,
)
from tests.faults.conftest import serve
from tests.faults.test_telemetry_faults import stored_values

pytestmark = pytest.mark.subprocess


@dataclass
class Cluster:
    nodes: list[str]
    processes: list[subprocess.Popen[bytes]]

    def admin(self, node: int, **options: object) -> tether.Client:
        org, user, password = OPERATOR
        return tether.Client(
            self.nodes[node], username=user, password=password, organization=org, **options
        )  # type: ignore[arg-type]


@pytest.fixture
def cluster(s3_server: S3Server, redis_url: str, tmp_path: Path) -> Iterator[Cluster]:
    database = _postgres_database()
    blobs = s3_server.settings(f"cluster-{secrets.token_hex(4)}")
    processes: list[subprocess.Popen[bytes]] = []
    try:
        nodes = []
        for name in ("a", "b"):
            port = free_port()
            processes.append(serve(port, tmp_path / name / "data", database, redis_url, **blobs))
            nodes.append(f"http://127.0.0.1:{port}")
        yield Cluster(nodes, processes)
    finally:
        for process in processes:
            process.kill()
            process.wait(30)
        _drop_postgres_database(database)


def test_what_one_node_stores_the_other_serves(cluster: Cluster, tmp_path: Path) -> None:
    data = random.Random(15).randbytes(3 * 1024 * 1024 + 17)
    with cluster.admin(0) as a, cluster.admin(1) as b:
        stored = a.files.put(("big.bin", io.BytesIO(data)), "/shared/big.bin")
        assert b.files.info("/shared/big.bin")["sha256"] == stored["sha256"]
        assert b.files.read("/shared/big.bin") == data
        ranged = b.request(
            "GET", "files/data/shared/big.bin", headers={"Range": "bytes=1000-1999"}, raw=True
        )
        assert ranged == data[1000:2000]
        target = tmp_path / "big.bin"
        partial = target.with_name(f".{target.name}.{stored['sha256'][:16]}.part")
        partial.write_bytes(data[: 1024 * 1024])
        assert b.files.get("/shared/big.bin", target).read_bytes() == data
        assert not partial.exists()

        a.updates.publish("fw", "2.0.0", ("fw.bin", io.BytesIO(data)))
        a.updates.deploy("fw", "2.0.0")
        device = a.post("devices", {"name": "on-b"})
    with tether.Client(
        cluster.nodes[1], device_id=device["id"], device_secret=device["secret"]
    ) as on_b:
        offer = on_b.updates.check().available[0]
        path = offer.download(tmp_path)
        assert hashlib.sha256(path.read_bytes()).hexdigest() == offer.sha256


def test_a_broadcast_on_one_node_collects_answers_from_the_other(cluster: Cluster) -> None:
    with cluster.admin(0) as caster, cluster.admin(1) as player:
        listener = player.get_channel("fleet").listen("ping", timeout=10)

        def answer() -> None:
            got = listener.wait(timeout=20)
            assert got is not None
            got.respond({"node": "b", "got": got.payload})

        worker = threading.Thread(target=answer)
        worker.start()
        responses: list[object] = []
        wait_for(
            lambda: bool(
                responses.extend(caster.get_channel("fleet").broadcast("ping", 7, timeout=2))
                or responses
            ),
            timeout=30,
            what="the listener on b to answer",
        )
        worker.join(20)
        assert responses == [{"node": "b", "got": 7}]


def test_a_node_killed_mid_traffic_loses_nothing_acknowledged(
    cluster: Cluster, tmp_path: Path
) -> None:
    with cluster.admin(1) as admin:
        device = admin.post("devices", {"name": "pusher"})
    with tether.Client(
        cluster.nodes[0],
        device_id=device["id"],
        device_secret=device["secret"],
        failover_urls=[cluster.nodes[1]],
    ) as client:
        telemetry = tether.Telemetry(client, outbox=tmp_path / "outbox.db")
        uploads: dict[str, tuple[str, bool]] = {}
        """Each upload's SHA-256, and whether the cluster acknowledged it."""
        committed = 0
        for i in range(400):
            if i == 150:
                cluster.processes[0].kill()
                cluster.processes[0].wait(30)
            telemetry.add_value("i", i)
            telemetry.commit()
            committed += 1
            if i % 10 == 0:
                telemetry.push()
            if i % 40 == 0:
                body = random.Random(i).randbytes(256 * 1024)
                path = f"/devices/{device['id']}/up-{i}.bin"
                try:
                    acknowledged = client.files.put(io.BytesIO(body), path)["size"] == len(body)
                except tether.NetworkError:
                    acknowledged = False
                uploads[path] = (hashlib.sha256(body).hexdigest(), acknowledged)
        while telemetry.pending:
            telemetry.push()
        telemetry.close()
        assert client.url == cluster.nodes[1]
    with cluster.admin(1) as admin:
        values = stored_values(admin, device["id"], "i")
        assert sorted(values) == list(range(committed))
        assert sum(acknowledged for _, acknowledged in uploads.values()) >= 9
        for path, (sha256, acknowledged) in uploads.items():
            try:
                assert admin.files.info(path)["sha256"] == sha256, path
            except tether.NotFoundError:
                assert not acknowledged, f"{path} was acknowledged, then lost"


def test_a_deployment_changed_on_one_node_is_current_on_the_other_at_once(
    cluster: Cluster,
) -> None:
    with cluster.admin(0) as a:
        a.updates.publish("app", "1.0.0", ("app.bin", io.BytesIO(b"one")))
        deployment = a.updates.deploy("app", "1.0.0")
        device = a.post("devices", {"name": "checker"})
        with tether.Client(
            cluster.nodes[1], device_id=device["id"], device_secret=device["secret"]
        ) as on_b:
            assert [p.version for p in on_b.updates.check().available] == ["1.0.0"]
            deployment.abort()

            def current() -> bool:
                return on_b.updates.check().available == []

            wait_for(current, timeout=2, what="node b to hear of the abort")
