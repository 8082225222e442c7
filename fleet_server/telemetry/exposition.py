"""Serving `/metrics`: from the one server process, or from the supervisor for every worker at once.

One process (`--workers 1`): the app's own registry plus prometheus-client's process, platform
and GC collectors, on a small HTTP server thread. Several workers: the supervisor points every
worker at one folder (PROMETHEUS_MULTIPROC_DIR, in the worker's environment before it imports
prometheus-client) and serves a registry whose only collector merges the workers' files, so one
scrape shows all of them. The folder is emptied when the supervisor starts — files of an earlier
run would otherwise be added into this one's counters — and a temporary one is removed at exit.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import shutil
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from wsgiref.simple_server import WSGIServer

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    start_http_server,
)
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

_LOGGER = logging.getLogger(__name__)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


class MetricsAddressError(ValueError):
    """A --metrics-listen value that is not host:port."""


def parse_listen(listen: str) -> tuple[str, int]:
    """`host:port` (IPv6 in brackets) as (host, port)."""
    host, sep, port = listen.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise MetricsAddressError(f"--metrics-listen must be HOST:PORT (e.g. 127.0.0.1:9464), got {listen!r}")
    return host, int(port)


def is_loopback_host(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass
class MetricsEndpoint:
    """A running `/metrics` HTTP server; `port` is the one it got (for `:0`)."""

    server: WSGIServer
    thread: threading.Thread

    @property
    def port(self) -> int:
        return int(self.server.server_port)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


def serve_metrics(registry: CollectorRegistry, listen: str) -> MetricsEndpoint:
    """Serve `registry` at http://listen/metrics on a daemon thread."""
    host, port = parse_listen(listen)
    if not is_loopback_host(host):
        _LOGGER.warning(
            "metrics on %s: whoever reaches it sees customer codes and their push counts (never a token)",
            listen,
        )
    server, thread = start_http_server(port, addr=host, registry=registry)
    return MetricsEndpoint(server, thread)


def with_process_collectors(registry: CollectorRegistry) -> CollectorRegistry:
    """`registry` plus the process (memory, CPU, file descriptors), platform and GC collectors."""
    for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
        with contextlib.suppress(ValueError):  # already there
            registry.register(collector)
    return registry


@dataclass
class WorkerMetricsFolder:
    """The folder the workers write their metric files to, and who removes it."""

    path: Path
    temporary: bool

    @classmethod
    def prepare(cls, configured: Path | None) -> WorkerMetricsFolder:
        """`configured` emptied of earlier runs' files, or a fresh temporary folder."""
        if configured is None:
            return cls(Path(tempfile.mkdtemp(prefix="fleet-metrics-")), temporary=True)
        configured.mkdir(parents=True, exist_ok=True)
        for stale in configured.glob("*.db"):
            stale.unlink()
        return cls(configured, temporary=False)

    def registry(self) -> CollectorRegistry:
        """A registry that merges every worker's files at each scrape."""
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=str(self.path))  # type: ignore[no-untyped-call]
        return registry

    def worker_gone(self, pid: int) -> None:
        """Drop a stopped worker's live gauges (its counters stay: they were counted)."""
        mark_process_dead(pid, str(self.path))  # type: ignore[no-untyped-call]

    def remove(self) -> None:
        if self.temporary:
            shutil.rmtree(self.path, ignore_errors=True)
