"""`fleet-server serve --workers N`: N serving processes sharing one port, and the process that minds them.

Each worker is a full server in a fresh interpreter (`python -m fleet_server.supervisor`, so no
gRPC or database state is ever forked), configured through the same `FLEET_*` variables as
everything else; the kernel spreads new connections across them through SO_REUSEPORT. The
supervisor forwards SIGTERM/SIGINT to every worker, waits for their graceful stop, and exits.
When a worker dies on its own, the supervisor stops the others and exits non-zero, so the
service manager (systemd, Kubernetes) restarts the whole unit instead of the supervisor hiding a
crash loop.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import signal
import subprocess
import sys
import time
from types import FrameType
from typing import TYPE_CHECKING

from fleet_server.config import Settings
from fleet_server.logs import configure_logging
from fleet_server.signals import STOP_SIGNALS, catch_stop_signals

if TYPE_CHECKING:
    from fleet_server.telemetry.exposition import MetricsEndpoint, WorkerMetricsFolder

_LOGGER = logging.getLogger(__name__)

# Time a worker gets beyond the grace period to close its connections before it is killed.
_KILL_MARGIN_S = 5.0
_POLL_S = 0.2
# A worker stopped by a signal before it could handle signals (its first instants) lost nothing.
_STOPPED_CLEANLY = {0, -signal.SIGTERM, -signal.SIGINT}


def worker_environment(settings: Settings, base: dict[str, str] | None = None) -> dict[str, str]:
    """`base` (the current environment) with every setting spelled out as its `FLEET_*` variable."""
    env = dict(os.environ if base is None else base)
    for f in dataclasses.fields(Settings):
        value = getattr(settings, f.name)
        name = f"FLEET_{f.name.upper()}"
        if value is None:
            env.pop(name, None)
        elif isinstance(value, bool):
            env[name] = "true" if value else "false"
        else:
            env[name] = str(value)
    return env


def _signal_all(workers: list[subprocess.Popen[bytes]], signum: int) -> None:
    for worker in workers:
        if worker.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                worker.send_signal(signum)


def supervise(settings: Settings) -> int:
    """Run `settings.workers` serving processes until signalled; 0 when all stopped cleanly.

    With --metrics-listen the supervisor serves `/metrics` for all workers: each worker writes
    its values to files in one folder (prometheus-client's multiprocess mode, switched on by the
    folder in the worker's environment), merged at every scrape.
    """
    # Imported here, not at the top: a worker runs this module too, and must catch stop signals
    # before anything slow is imported.
    from fleet_server.telemetry.exposition import MULTIPROC_ENV, WorkerMetricsFolder, serve_metrics

    env = worker_environment(settings)
    folder: WorkerMetricsFolder | None = None
    endpoint: MetricsEndpoint | None = None
    if settings.metrics_listen:
        folder = WorkerMetricsFolder.prepare(settings.metrics_dir)
        env[MULTIPROC_ENV] = str(folder.path)
        endpoint = serve_metrics(folder.registry(), settings.metrics_listen)
        _LOGGER.info("metrics of every worker at http://%s/metrics", settings.metrics_listen)
    try:
        return _supervise(settings, env, folder)
    finally:
        if endpoint is not None:
            endpoint.close()
        if folder is not None:
            folder.remove()


def _supervise(settings: Settings, env: dict[str, str], folder: WorkerMetricsFolder | None) -> int:
    stop_requested_at: list[float] = []
    workers: list[subprocess.Popen[bytes]] = []

    def request_stop(signum: int, _frame: FrameType | None) -> None:
        if not stop_requested_at:
            stop_requested_at.append(time.monotonic())
        _signal_all(workers, signal.SIGTERM)

    previous = {sig: signal.signal(sig, request_stop) for sig in STOP_SIGNALS}
    try:
        for _ in range(settings.workers):
            workers.append(subprocess.Popen([sys.executable, "-m", "fleet_server.supervisor"], env=env))
        _LOGGER.info(
            "supervisor pid %d started %d workers on %s: %s",
            os.getpid(),
            len(workers),
            settings.listen,
            ", ".join(str(w.pid) for w in workers),
        )
        if stop_requested_at:  # a signal that came while the workers were being started
            _signal_all(workers, signal.SIGTERM)
        return _mind(workers, settings, stop_requested_at, folder)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _mind(
    workers: list[subprocess.Popen[bytes]],
    settings: Settings,
    stop_requested_at: list[float],
    folder: WorkerMetricsFolder | None = None,
) -> int:
    """Wait for the workers; after a stop request (or a crash), kill whoever overstays the grace."""
    running = list(workers)
    crashed = False
    while running:
        for worker in [w for w in running if w.poll() is not None]:
            running.remove(worker)
            if folder is not None:
                folder.worker_gone(worker.pid)
            if not stop_requested_at:
                crashed = True
                _LOGGER.error(
                    "worker pid %d exited with %s; stopping the others", worker.pid, worker.returncode
                )
                stop_requested_at.append(time.monotonic())
                _signal_all(running, signal.SIGTERM)
        overdue = stop_requested_at and (
            time.monotonic() - stop_requested_at[0] > settings.shutdown_grace_s + _KILL_MARGIN_S
        )
        for worker in running if overdue else []:
            _LOGGER.error("worker pid %d overstayed the grace period; killing it", worker.pid)
            worker.kill()
        time.sleep(_POLL_S if running else 0)
    if crashed or any(w.returncode not in _STOPPED_CLEANLY for w in workers):
        return 1
    _LOGGER.info("all workers stopped")
    return 0


def _worker_main() -> int:
    """One worker: settings from the environment the supervisor wrote, then serve until told to stop."""
    catch_stop_signals()  # first: a stop request during the slow imports below must not kill us
    from fleet_server.server import ConfigurationError, serve

    settings = Settings.from_env()
    configure_logging(settings.log_level)
    try:
        serve(settings, expose_metrics=False)  # the supervisor serves every worker's metrics
    except ConfigurationError as exc:
        print(f"fleet-server: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(_worker_main())
