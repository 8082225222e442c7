"""The gauges that are read, not counted: database turns and connections, memory — and, once at start,
every customer's last push from the database.

One task per serving process, on its event loop: a sample is a few lock-protected reads, far
cheaper than updating the gauges on every database job. In multiprocess mode this is also the
only way a worker's gauges reach the supervisor's `/metrics`, which reads files, not objects.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping

from fleet_server.db.scheduler import Turn
from fleet_server.db.session import Database
from fleet_server.domain.fleet_health import last_pushes
from fleet_server.telemetry.server_metrics import ServerMetrics

_LOGGER = logging.getLogger(__name__)

SAMPLE_INTERVAL_S = 2.0
# The seed is an operator-lane read like any other, from a tenant of its own.
_SEED_TURN = Turn.operator("metrics")


async def seed_last_pushes(metrics: ServerMetrics, db: Database) -> int:
    """Set `fleet_last_push_timestamp_seconds` from sync_status: a portal that went quiet before this
    process started is still seen going stale. Returns the series seeded."""
    pushes = await db.run(_SEED_TURN, last_pushes)
    for push in pushes:
        metrics.ingest.seed_last_push(push.code, push.resource, push.at)
    return len(pushes)


async def sample_forever(
    metrics: ServerMetrics, databases: Mapping[str, Database], interval_s: float = SAMPLE_INTERVAL_S
) -> None:
    """Seed, then sample every `interval_s` until cancelled; a failed seed is logged, not fatal."""
    try:
        seeded = await seed_last_pushes(metrics, databases["primary"])
        _LOGGER.debug("seeded %d last-push series from the database", seeded)
    except Exception as exc:  # the database may be down at start; pushes set the gauges anyway
        _LOGGER.warning("could not seed last-push metrics from the database: %s", exc)
    while True:
        sample(metrics, databases)
        await asyncio.sleep(interval_s)


def sample(metrics: ServerMetrics, databases: Mapping[str, Database]) -> None:
    metrics.database.sample(databases)
    metrics.process.sample()
