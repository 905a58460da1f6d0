"""How long telemetry stays: points older than the retention are pruned by batch, and a
deleted device's telemetry goes with it."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from tether.server.db.cascades import Gone, on_delete
from tether.server.db.tables import telemetry_batches, telemetry_latest, telemetry_points


async def prune(engine: AsyncEngine, older_than: dt.datetime) -> int:
    """Delete the points of batches received before `older_than`; returns how many."""
    async with engine.begin() as conn:
        bound = (
            await conn.execute(
                sa.select(sa.func.max(telemetry_batches.c.last_point_id)).where(
                    telemetry_batches.c.received_at < older_than
                )
            )
        ).scalar()
        if bound is None:
            return 0
        deleted = await conn.execute(
            telemetry_points.delete().where(telemetry_points.c.id <= bound)
        )
        await conn.execute(
            telemetry_batches.delete().where(telemetry_batches.c.received_at < older_than)
        )
        return int(deleted.rowcount)


@on_delete("device")
async def _forget_points(gone: Gone) -> None:
    """A deleted device's telemetry: its points, latest values and the batches it pushed."""
    for table in (telemetry_points, telemetry_latest, telemetry_batches):
        await gone.conn.execute(table.delete().where(table.c.device_id.in_(gone.ids)))
