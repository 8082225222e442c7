"""The gauges that are read, not counted: database turns, connections, call budgets, memory — and,
every minute, which customers are active and when each last pushed, from the database.

One task per serving process, on its event loop: a sample is a few lock-protected reads, far
cheaper than updating the gauges on every database job. In multiprocess mode this is also the
only way a worker's gauges reach the supervisor's `/metrics`, which reads files, not objects.
Re-reading the last pushes from `sync_status` keeps them true across restarts and for pushes
that went to another server behind the same load balancer; one query of a few rows per
customer a minute.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from fleet_server.db.scheduler import Turn
from fleet_server.db.session import Database
from fleet_server.domain.fleet_health import fleet_state
from fleet_server.domain.token_cache import TokenCache
from fleet_server.rpc.admission import Admission
from fleet_server.telemetry.server_metrics import ServerMetrics

_LOGGER = logging.getLogger(__name__)

SAMPLE_INTERVAL_S = 2.0
REFRESH_INTERVAL_S = 60.0
# The refresh is an operator-lane read like any other, from a tenant of its own.
_REFRESH_TURN = Turn.operator("metrics")


async def refresh_from_database(metrics: ServerMetrics, db: Database) -> int:
    """Set the customers' active flags and last pushes from the database; the last-push series set."""
    state = await db.run(_REFRESH_TURN, fleet_state)
    metrics.ingest.customers(state.active)
    for push in state.pushes:
        metrics.ingest.seed_last_push(push.code, push.resource, push.at)
    return len(state.pushes)


async def sample_forever(
    metrics: ServerMetrics,
    databases: Mapping[str, Database],
    admission: Admission | None = None,
    token_cache: TokenCache[Any] | None = None,
    interval_s: float = SAMPLE_INTERVAL_S,
    refresh_s: float = REFRESH_INTERVAL_S,
) -> None:
    """Sample every `interval_s` and refresh from the database every `refresh_s`, until cancelled."""
    loop = asyncio.get_running_loop()
    refreshed_at: float | None = None
    while True:
        sample(metrics, databases, admission, token_cache)  # first: the gauges are there from the start
        if refreshed_at is None or loop.time() - refreshed_at >= refresh_s:
            refreshed_at = loop.time()
            try:
                await refresh_from_database(metrics, databases["primary"])
            except Exception as exc:  # the database may be down; pushes still set the gauges
                _LOGGER.warning("could not refresh customer metrics from the database: %s", exc)
        await asyncio.sleep(interval_s)


def sample(
    metrics: ServerMetrics,
    databases: Mapping[str, Database],
    admission: Admission | None = None,
    token_cache: TokenCache[Any] | None = None,
) -> None:
    metrics.database.sample(databases)
    metrics.process.sample()
    if admission is not None:
        metrics.admission.sample(admission)
    if token_cache is not None:
        metrics.token_cache.sample(token_cache)
