"""The composition root: settings, databases, clock, and every piece of per-process state, built once.

Servicers receive the `App` and take what they need from it; nothing below keeps state of its
own in module globals, so two apps in one process (tests, benchmarks) never share a gate or a
partition cache.
"""

from __future__ import annotations

from fleet_server.clock import Clock, SystemClock
from fleet_server.config import Settings
from fleet_server.db.session import Database
from fleet_server.domain.authentication import CustomerIdentity, SqlTokenStore, TokenStore
from fleet_server.domain.fairness import IngestGate
from fleet_server.domain.ingest import MeasurementIngest
from fleet_server.domain.memory import BATCH_RETRY_MS, SNAPSHOT_RETRY_MS, ByteBudget, resident_cost
from fleet_server.domain.token_cache import TokenCache
from fleet_server.rpc.admission import Admission, Limits
from fleet_server.store.partitions import Partitions
from fleet_server.store.token_events import TokenChangeListener
from fleet_server.telemetry.server_metrics import ServerMetrics


class App:
    """The process-wide dependencies, injected into each servicer and the interceptor.

    `db` is the primary; `reader` is where the query service reads (a replica when
    FLEET_QUERY_DATABASE_URL names one, else the primary). `gate` (one measurement stream per
    customer, the row budgets) and `partitions` (the months known to exist) are this process's
    ingest state; `ingest` is the measurement use case built on them. `admission` counts the calls
    in progress against their budgets (per customer, operators, callers without a token);
    `snapshot_memory` and `batch_memory` bound the pushed data all calls of this process hold.
    `metrics` (with --metrics-listen) holds this process's Prometheus families, on a registry of
    its own. `token_cache` keeps customer token lookups while `token_listener` hears every
    credential change (docs/DESIGN.md, "Authentication").
    """

    def __init__(
        self,
        settings: Settings,
        db: Database,
        *,
        clock: Clock | None = None,
        reader: Database | None = None,
        tokens: TokenStore | None = None,
    ) -> None:
        self.settings = settings
        self.db = db
        self.clock: Clock = clock or SystemClock()
        self.reader = reader or db
        self.token_cache: TokenCache[CustomerIdentity] = TokenCache(settings.token_cache_entries)
        self.token_listener: TokenChangeListener | None = None
        if tokens is None and self.token_cache.enabled:
            cache = self.token_cache
            self.token_listener = TokenChangeListener(
                db.engine.url, armed=cache.arm, changed=cache.invalidate, lost=cache.disarm
            ).start()
        self.tokens: TokenStore = tokens or SqlTokenStore(db, self.clock, self.token_cache)
        self.gate = IngestGate.build(db, settings, self.clock)
        self.partitions = Partitions(db)
        # One customer's snapshot streams together hold no more than one full snapshot costs.
        self.snapshot_memory = ByteBudget(
            "reference-data snapshots",
            settings.max_snapshot_memory_bytes,
            per_holder=resident_cost(settings.max_snapshot_bytes, settings.max_snapshot_rows),
            retry_after_ms=SNAPSHOT_RETRY_MS,
        )
        self.batch_memory = ByteBudget(
            "measurement batches", settings.max_batch_memory_bytes, retry_after_ms=BATCH_RETRY_MS
        )
        self.ingest = MeasurementIngest(db, self.gate, self.partitions, self.clock, self.batch_memory)
        self.admission = Admission(Limits.from_settings(settings), self.clock)
        self.metrics: ServerMetrics | None = ServerMetrics() if settings.metrics_listen else None

    def databases(self) -> dict[str, Database]:
        """Each database this process uses, by the name its metrics carry."""
        if self.reader is self.db:
            return {"primary": self.db}
        return {"primary": self.db, "reader": self.reader}

    def close(self) -> None:
        if self.token_listener is not None:
            self.token_listener.stop()
        self.db.close()
        if self.reader is not self.db:
            self.reader.close()
