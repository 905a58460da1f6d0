"""Deleting a project removes everything it held, on both back ends: its resources, their
telemetry and update reports, its data items, file tree and tasks, its content's bytes (whose
blobs nothing refers to any more, so they are collected)."""

from __future__ import annotations

import asyncio
import hashlib
import time
from typing import Any

import sqlalchemy as sa

from tests.conftest import RunningServer, Tenant
from tether.server.db.engine import create_engine
from tether.server.db.tables import (
    content_data,
    data_items,
    deployment_reports,
    file_tasks,
    files,
    resources,
    telemetry_batches,
    telemetry_latest,
    telemetry_points,
)
from tether.server.settings import Settings


async def _left(server: RunningServer, project_id: str, device_id: str, blobs: list[str]) -> Any:
    """What the database still holds of the project, table by table."""
    settings = Settings.load({"data": server.data, "database_url": server.database_url}, environ={})
    engine = create_engine(settings.resolved_database_url)
    counts: dict[str, int] = {}

    async def count(name: str, query: Any) -> None:
        if isinstance(query, sa.Select):
            query = query.subquery()
        counts[name] = (await conn.execute(sa.select(sa.func.count()).select_from(query))).scalar()

    try:
        async with engine.connect() as conn:
            for table in (telemetry_points, telemetry_latest, telemetry_batches):
                await count(table.name, table.select().where(table.c.device_id == device_id))
            await count(
                "deployment_reports",
                deployment_reports.select().where(deployment_reports.c.device_id == device_id),
            )
            await count("resources", resources.select().where(resources.c.project_id == project_id))
            for table in (data_items, files, file_tasks):
                await count(table.name, table.select().where(table.c.scope == project_id))
            await count(
                "referenced blobs",
                sa.union_all(
                    sa.select(files.c.sha256).where(files.c.sha256.in_(blobs)),
                    sa.select(content_data.c.sha256).where(content_data.c.sha256.in_(blobs)),
                ).subquery(),
            )
    finally:
        await engine.dispose()
    return counts


def test_deleting_a_project_leaves_nothing_behind(server: RunningServer, tenant: Tenant) -> None:
    with tenant.client() as admin:
        project = admin.projects.create("doomed")
        base = f"projects/{project.id}"
        device = admin.post(f"{base}/devices", {"name": "d"})
        admin.post(
            f"{base}/devices/{device['id']}/telemetry",
            {"batch": "b1", "entries": [{"ts": time.time(), "values": {"t": 1}}]},
        )
        admin.request("PUT", "packages/fw/versions/1.0.0", content=b"firmware")
        admin.post("deployments", {"reference": "fw", "version": "1.0.0"})
        admin.post(
            "updates/reports",
            {
                "reference": "fw",
                "version": "1.0.0",
                "state": "installed",
                "device_id": device["id"],
            },
        )
        admin.put(f"{base}/data/g/k", {"v": 1})
        file_bytes, content_bytes = b"only in the doomed project", b"a doomed poster"
        admin.request("PUT", f"{base}/files/data/docs/a.txt", content=file_bytes)
        admin.post(f"{base}/files/tasks", {"op": "copy", "path": "/docs/a.txt", "target": "/b.txt"})
        content = admin.post(f"{base}/content", {"name": "poster"})
        admin.request("PUT", f"{base}/content/{content['id']}/data", content=content_bytes)
        blobs = [hashlib.sha256(b).hexdigest() for b in (file_bytes, content_bytes)]
        before = asyncio.run(_left(server, project.id, device["id"], blobs))
        assert all(before.values()), before
        admin.delete(base)
        after = asyncio.run(_left(server, project.id, device["id"], blobs))
    assert after == dict.fromkeys(before, 0)
