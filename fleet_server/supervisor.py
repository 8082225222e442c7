"""`fleet-server serve --workers N`: N serving processes sharing one port, and the process that minds them.

Each worker is a full `fleet-server` server in its own interpreter (started with `spawn`, so no
gRPC or database state is ever forked); the kernel spreads new connections across them through
SO_REUSEPORT. The supervisor forwards SIGTERM/SIGINT to every worker, waits for their graceful
stop, and exits. When a worker dies on its own, the supervisor stops the others and exits
non-zero, so the service manager (systemd, Kubernetes) restarts the whole unit with a clean
slate instead of the supervisor hiding crash loops.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import signal
import sys
import time
from multiprocessing.connection import wait
from multiprocessing.process import BaseProcess
from types import FrameType

from fleet_server.config import Settings
from fleet_server.logs import configure_logging

_LOGGER = logging.getLogger(__name__)

# Time a worker gets beyond the grace period to close its connections before it is killed.
_KILL_MARGIN_S = 5.0


def _worker(settings: Settings) -> None:
    """Entry point of one worker process."""
    from fleet_server.server import ConfigurationError, serve

    configure_logging(settings.log_level)
    try:
        serve(settings)
    except ConfigurationError as exc:
        print(f"fleet-server: {exc}", file=sys.stderr)
        sys.exit(2)


def _signal_all(workers: list[BaseProcess], signum: int) -> None:
    for worker in workers:
        if worker.pid is not None and worker.exitcode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(worker.pid, signum)


def supervise(settings: Settings) -> int:
    """Run `settings.workers` serving processes until signalled; 0 when all stopped cleanly."""
    context = multiprocessing.get_context("spawn")
    workers: list[BaseProcess] = [
        context.Process(target=_worker, args=(settings,), name=f"fleet-worker-{n}")
        for n in range(settings.workers)
    ]
    stop_requested_at: list[float] = []

    def request_stop(signum: int, _frame: FrameType | None) -> None:
        if not stop_requested_at:
            stop_requested_at.append(time.monotonic())
        _signal_all(workers, signal.SIGTERM)

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        for worker in workers:
            worker.start()
        _LOGGER.info(
            "supervisor pid %d started %d workers on %s: %s",
            os.getpid(),
            len(workers),
            settings.listen,
            ", ".join(str(w.pid) for w in workers),
        )
        return _mind(workers, settings, stop_requested_at)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _mind(workers: list[BaseProcess], settings: Settings, stop_requested_at: list[float]) -> int:
    """Wait for the workers; after a stop request (or a crash), kill whoever overstays the grace."""
    running = {worker.sentinel: worker for worker in workers}
    crashed = False
    while running:
        for sentinel in wait(list(running), timeout=0.5):
            worker = running.pop(int(sentinel))  # type: ignore[arg-type]
            worker.join()
            if not stop_requested_at:
                crashed = True
                _LOGGER.error(
                    "worker pid %s exited with %s; stopping the others", worker.pid, worker.exitcode
                )
                stop_requested_at.append(time.monotonic())
                _signal_all(list(running.values()), signal.SIGTERM)
        overdue = stop_requested_at and (
            time.monotonic() - stop_requested_at[0] > settings.shutdown_grace_s + _KILL_MARGIN_S
        )
        if overdue:
            for worker in running.values():
                _LOGGER.error("worker pid %s overstayed the grace period; killing it", worker.pid)
                worker.kill()
    failed = [w for w in workers if w.exitcode != 0]
    if crashed or failed:
        return 1
    _LOGGER.info("all workers stopped")
    return 0
