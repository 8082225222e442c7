"""`fleet-push run --metrics-listen HOST:PORT`: the pusher's own Prometheus metrics, per resource.

What a portal's operator (or the fleet operator scraping portals) asks at 3 a.m.: how much is
still waiting to be sent, when did each resource last get through, how many failures in a row,
is the token refused, and how long do ticks take. Everything is read after each tick from the
tick's report and the push state, so the pusher itself knows nothing about metrics.

The backlog is exact when the tick tells it (nothing left, or a back-fill's count of rows
left); otherwise (a failure, a back-off, a refused token) it is counted from the portal, at most
once per `BACKLOG_RECOUNT_S` per resource, because a count over a large portal table is not
free. For a reference set the backlog is its size while the server does not have it, else 0.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from datetime import timedelta
from wsgiref.simple_server import WSGIServer

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from fleet_client.errors import ConfigurationError
from fleet_client.pusher import Outcome, Pusher, TickReport
from fleet_client.resources import MEASUREMENTS, REFERENCE_SETS, RESOURCES

_LOGGER = logging.getLogger(__name__)

BACKLOG_RECOUNT_S = 60.0
TICK_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)


class PushMetrics:
    """The pusher's families on a registry of its own."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        # `_created` series would double every counter for nothing a dashboard reads.
        prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.backlog = Gauge(
            "fleet_push_backlog_rows",
            "Rows still to send per resource: measurements not yet acknowledged, or the whole reference "
            "set while the server does not have it.",
            ("resource",),
            registry=r,
        )
        self.in_sync = Gauge(
            "fleet_push_in_sync",
            "1 when the resource ended the last tick in sync with the server, else 0.",
            ("resource",),
            registry=r,
        )
        self.last_success = Gauge(
            "fleet_push_last_success_timestamp_seconds",
            "When the resource last got through to the server (Unix time); 0 = never.",
            ("resource",),
            registry=r,
        )
        self.consecutive_failures = Gauge(
            "fleet_push_consecutive_failures",
            "Failed attempts in a row per resource (0 after a success).",
            ("resource",),
            registry=r,
        )
        self.failures = Counter(
            "fleet_push_failures", "Failed push attempts per resource.", ("resource",), registry=r
        )
        self.rows_sent = Counter(
            "fleet_push_rows_sent",
            "Rows the server acknowledged per resource (snapshot items, measurement rows).",
            ("resource",),
            registry=r,
        )
        self.measurement_rows = Counter(
            "fleet_push_measurement_rows",
            "Acknowledged measurement rows by what the server made of them: accepted, duplicate.",
            ("outcome",),
            registry=r,
        )
        self.token_refused = Gauge(
            "fleet_push_token_refused",
            "1 while the server refuses the token (pushing has stopped until FLEET_TOKEN changes).",
            registry=r,
        )
        self.tick_seconds = Histogram(
            "fleet_push_tick_seconds", "Duration of one tick.", buckets=TICK_BUCKETS, registry=r
        )
        self.last_tick = Gauge(
            "fleet_push_last_tick_timestamp_seconds", "When the last tick ended (Unix time).", registry=r
        )
        for resource in RESOURCES:
            for family in (self.failures, self.rows_sent, self.in_sync, self.consecutive_failures):
                family.labels(resource)
        for outcome in ("accepted", "duplicate"):
            self.measurement_rows.labels(outcome)
        self._backlog = _BacklogCounter()

    def record_tick(self, pusher: Pusher, report: TickReport, seconds: float) -> None:
        """Everything one tick changed, read from its report and the push state.

        A scrape can land between two of these writes, so the order is chosen: the gauges of the
        state (backlog, failures, in sync) first, then the counters of what was sent, then the
        tick's own time. A scrape that sees a tick's rows therefore also sees its backlog.
        """
        now = pusher.clock.now()
        for resource, rows in self._backlog.of(pusher, report).items():
            self.backlog.labels(resource).set(rows)
        for state in pusher.state.load_all():
            self.consecutive_failures.labels(state.resource).set(state.failures)
            if state.last_success is not None:
                self.last_success.labels(state.resource).set(state.last_success.timestamp())
        self.token_refused.set(1 if report.blocked else 0)
        for result in report.results:
            self.in_sync.labels(result.resource).set(1 if result.outcome.in_sync else 0)
        for result in report.results:
            if result.outcome is Outcome.FAILED:
                self.failures.labels(result.resource).inc()
            if result.rows:
                self.rows_sent.labels(result.resource).inc(result.rows)
            if result.resource == MEASUREMENTS:
                self.measurement_rows.labels("accepted").inc(result.accepted)
                self.measurement_rows.labels("duplicate").inc(result.duplicates)
        self.tick_seconds.observe(seconds)
        self.last_tick.set(now.timestamp())


@dataclass
class _BacklogCounter:
    """Rows left per resource: from the tick's report when it says, else counted (rate-limited)."""

    _counted_at: dict[str, float] = field(default_factory=dict)

    def of(self, pusher: Pusher, report: TickReport) -> dict[str, int]:
        found: dict[str, int] = {}
        for result in report.results:
            if result.outcome in (Outcome.PUSHED, Outcome.UNCHANGED, Outcome.UP_TO_DATE):
                if result.resource != MEASUREMENTS or not report.backlog:
                    found[result.resource] = 0
                elif report.progress is not None and report.progress.rows_left is not None:
                    found[result.resource] = report.progress.rows_left
            if result.resource not in found:
                counted = self._count(pusher, result.resource)
                if counted is not None:
                    found[result.resource] = counted
        return found

    def _count(self, pusher: Pusher, resource: str) -> int | None:
        """The rows left of `resource` read from the portal, unless counted within the last minute."""
        now = pusher.clock.monotonic()
        last = self._counted_at.get(resource)
        if last is not None and now - last < BACKLOG_RECOUNT_S:
            return None
        self._counted_at[resource] = now
        try:
            if resource == MEASUREMENTS:
                cursor = pusher.state.load(MEASUREMENTS).cursor
                horizon = pusher.clock.now() - timedelta(seconds=pusher.options.safety_lag_s)
                return pusher.source.count_measurements_after(cursor, until=horizon)
            reference = next(r for r in REFERENCE_SETS if r.name == resource)
            return len(reference.read(pusher.source))
        except Exception as exc:  # the portal is down: the gauge keeps its last value
            _LOGGER.debug("counting the %s backlog failed: %s", resource, exc)
            return None


@dataclass
class MetricsEndpoint:
    """The pusher's `/metrics` HTTP server."""

    server: WSGIServer
    thread: threading.Thread

    @property
    def port(self) -> int:
        return int(self.server.server_port)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


def serve_metrics(metrics: PushMetrics, listen: str) -> MetricsEndpoint:
    """Serve `metrics` at http://listen/metrics on a daemon thread."""
    host, sep, port = listen.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ConfigurationError(f"--metrics-listen must be HOST:PORT (e.g. 127.0.0.1:9465), got {listen!r}")
    try:
        server, thread = start_http_server(int(port), addr=host.strip("[]"), registry=metrics.registry)
    except OSError as exc:
        raise ConfigurationError(f"cannot serve metrics on {listen}: {exc.strerror}") from exc
    _LOGGER.info("metrics at http://%s/metrics", listen)
    return MetricsEndpoint(server, thread)
