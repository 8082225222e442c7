"""The stop signals, and stop requests that arrive before the server's event loop handles them."""

from __future__ import annotations

import signal

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)

_early_stops: list[int] = []


def catch_stop_signals() -> None:
    """Remember SIGTERM/SIGINT from now on instead of dying, until the event loop takes over.

    A worker told to stop while it is still importing or connecting must still exit cleanly
    (status 0) once it can, not be killed by the default action half-way through its start.
    Cheap to import on purpose: it runs before anything heavy is loaded.
    """
    for sig in STOP_SIGNALS:
        signal.signal(sig, lambda signum, _frame: _early_stops.append(signum))


def stop_requested_early() -> bool:
    """True when a stop signal arrived while `catch_stop_signals` was in charge."""
    return bool(_early_stops)
