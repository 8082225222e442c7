"""Every metric family of one server process, built by the `App` on a registry of its own.

With `--workers N` each worker builds the same families; prometheus-client's multiprocess mode
(PROMETHEUS_MULTIPROC_DIR, set by the supervisor before a worker starts) writes their values to
per-process files that the supervisor's `/metrics` merges. A gauge therefore says how it
merges: `livesum` for what workers hold now (database turns, connections), `max` for
timestamps, `liveall` (one series per worker pid) for memory.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import grpc.aio
import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Gauge

from fleet_server.clock import Clock
from fleet_server.db.session import Database
from fleet_server.domain.token_cache import TokenCache
from fleet_server.rpc.admission import Admission
from fleet_server.telemetry.grpc_metrics import GrpcMetrics, GrpcMetricsInterceptor
from fleet_server.telemetry.ingest_metrics import IngestMetrics, IngestMetricsInterceptor

LANES = ("control", "operator", "ingest")


class DatabaseMetrics:
    """The database turns (`db/scheduler.py`) and connections of each database this process uses."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.connections = Gauge(
            "fleet_db_pool_connections",
            "Connections (and database threads) this server may hold, per database.",
            ("database",),
            multiprocess_mode="livesum",
            registry=registry,
        )
        self.in_use = Gauge(
            "fleet_db_pool_in_use",
            "Connections checked out of the pool now, per database.",
            ("database",),
            multiprocess_mode="livesum",
            registry=registry,
        )
        self.running = Gauge(
            "fleet_db_jobs_running",
            "Database jobs running now, per database and lane (control: token lookups, operator: admin "
            "and query calls, ingest: pushes).",
            ("database", "lane"),
            multiprocess_mode="livesum",
            registry=registry,
        )
        self.waiting = Gauge(
            "fleet_db_jobs_waiting",
            "Database jobs waiting for their turn now, per database and lane; a call that waits longer "
            "than --db-queue-timeout-s is refused as UNAVAILABLE (DATABASE_BUSY).",
            ("database", "lane"),
            multiprocess_mode="livesum",
            registry=registry,
        )

    def sample(self, databases: Mapping[str, Database]) -> None:
        for name, db in databases.items():
            pool = db.engine.pool
            self.connections.labels(name).set(pool.size())  # type: ignore[attr-defined]
            self.in_use.labels(name).set(pool.checkedout())  # type: ignore[attr-defined]
            for lane, (running, waiting) in db.turns.load().items():
                self.running.labels(name, lane).set(running)
                self.waiting.labels(name, lane).set(waiting)


class AdmissionMetrics:
    """The call budgets (`rpc/admission.py`): slots in use against each budget's size."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.in_use = Gauge(
            "fleet_calls_in_progress",
            "Calls in progress per budget (customers, operators, anonymous_streams, anonymous_calls); "
            "a full budget refuses its own kind with RESOURCE_EXHAUSTED.",
            ("budget",),
            multiprocess_mode="livesum",
            registry=registry,
        )
        self.limit = Gauge(
            "fleet_calls_limit",
            "The size of each call budget (summed over workers).",
            ("budget",),
            multiprocess_mode="livesum",
            registry=registry,
        )

    def sample(self, admission: Admission) -> None:
        limits = admission.limits
        sizes = {
            "customers": limits.customers,
            "operators": limits.operators,
            "anonymous_streams": limits.anonymous_streams,
            "anonymous_calls": limits.anonymous_calls,
        }
        for budget, in_use in admission.in_use().items():
            self.in_use.labels(budget).set(in_use)
            if budget in sizes:
                self.limit.labels(budget).set(sizes[budget])


class TokenCacheMetrics:
    """The token cache (`domain/token_cache.py`): whether it is on, and what it saved.

    Sampled, not counted per call: the cache counts for itself, and the counter moves by what it
    counted since the last sample.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self.on = Gauge(
            "fleet_token_cache_on",
            "1 while this process's token cache hears every credential change and may serve from "
            "memory; 0 while every token is looked up (summed over workers).",
            multiprocess_mode="livesum",
            registry=registry,
        )
        self.lookups = Counter(
            "fleet_token_cache_lookups",
            "Customer token lookups while the cache was on: hit (served from memory), miss "
            "(looked up in the database).",
            ("outcome",),
            registry=registry,
        )
        self._counted = (0, 0)

    def sample(self, cache: TokenCache[Any]) -> None:
        self.on.set(1 if cache.armed else 0)
        hits, misses = cache.hits, cache.misses
        self.lookups.labels("hit").inc(max(0, hits - self._counted[0]))
        self.lookups.labels("miss").inc(max(0, misses - self._counted[1]))
        self._counted = (hits, misses)


class ProcessMetrics:
    """What every worker holds, one series per worker (the memory limits are per process)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.resident = Gauge(
            "fleet_process_resident_memory_bytes",
            "Resident memory of this server process (each worker has its own series, by pid).",
            multiprocess_mode="liveall",
            registry=registry,
        )

    def sample(self) -> None:
        resident = resident_bytes()
        if resident is not None:
            self.resident.set(resident)


def resident_bytes() -> int | None:
    """This process's resident set size; None where /proc is not there to tell."""
    import os

    try:
        with open("/proc/self/statm", "rb") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


class CompressionMetrics:
    """The hook for cold storage (`fleet-server compress` and its background job): the job calls
    `run_finished` after each run. Until it does, the families exist at zero, so dashboards and
    alerts can be written against them now."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.runs = Counter(
            "fleet_compress_runs",
            "Compression runs, by outcome (ok, failed).",
            ("outcome",),
            registry=registry,
        )
        self.units = Counter(
            "fleet_compress_units",
            "(customer, device, metric, UTC month) units written (created or extended).",
            registry=registry,
        )
        self.readings = Counter(
            "fleet_compress_readings", "Readings moved into compressed days.", registry=registry
        )
        self.bytes_before = Counter(
            "fleet_compress_bytes_before",
            "Bytes the compressed readings took as rows (tuple bytes of rows and hourly rollups).",
            registry=registry,
        )
        self.bytes_after = Counter(
            "fleet_compress_bytes_after", "Bytes the compressed readings take now.", registry=registry
        )
        self.last_success = Gauge(
            "fleet_compress_last_success_timestamp_seconds",
            "When a compression run last finished without error (Unix time).",
            multiprocess_mode="max",
            registry=registry,
        )
        for outcome in ("ok", "failed"):
            self.runs.labels(outcome)

    def run_finished(
        self, *, ok: bool, units: int, readings: int, bytes_before: int, bytes_after: int, at: float
    ) -> None:
        self.runs.labels("ok" if ok else "failed").inc()
        self.units.inc(units)
        self.readings.inc(readings)
        self.bytes_before.inc(bytes_before)
        self.bytes_after.inc(bytes_after)
        if ok:
            self.last_success.set(at)


class ServerMetrics:
    """One process's metrics: gRPC, ingest, database, process, compression; never a token in a label."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        # `_created` series would double every counter's series for nothing a dashboard reads;
        # prometheus-client keeps this switch process-wide.
        prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = registry or CollectorRegistry()
        self.grpc = GrpcMetrics(self.registry)
        self.ingest = IngestMetrics(self.registry)
        self.database = DatabaseMetrics(self.registry)
        self.admission = AdmissionMetrics(self.registry)
        self.process = ProcessMetrics(self.registry)
        self.token_cache = TokenCacheMetrics(self.registry)
        self.compression = CompressionMetrics(self.registry)
        info = Gauge(
            "fleet_build_info",
            "Always 1; the version of the server as a label.",
            ("version",),
            multiprocess_mode="max",
            registry=self.registry,
        )
        info.labels(_version()).set(1)

    def interceptors(
        self, auth: grpc.aio.ServerInterceptor, clock: Clock
    ) -> list[grpc.aio.ServerInterceptor]:
        """The server's interceptor chain with `auth` in the middle: gRPC metrics first (refusals
        counted), ingest metrics after it (the customer is known)."""
        return [GrpcMetricsInterceptor(self.grpc), auth, IngestMetricsInterceptor(self.ingest, clock)]


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("fleet-sync")
    except PackageNotFoundError:
        return "unknown"
