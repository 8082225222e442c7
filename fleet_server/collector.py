"""The cyclic garbage collector, tuned for processes that allocate many short-lived objects.

Why: CPython runs a young-generation pass every 700 net allocations of container objects, and
every so often a full pass over every tracked object. Decoding a 5,000-row measurement batch
makes about 25,000 short-lived container objects (a tuple and two Timestamp wrappers a row),
all of which die by reference counting moments later; in a process that holds the server's
modules, metadata and descriptors (about 90,000 tracked objects at start), the passes they set
off took 60 % of the decode: 18.5 ms for 5,000 rows, 7.3 ms with no collector (docs/DESIGN.md,
Performance). Under a fleet every core is busy, so that was rows per second lost.

- A serving process and its decoding helper freeze what start-up made (`gc.freeze()`: a pass
  never walks it again; 9.5 ms for the decode) and run a young pass every `YOUNG_THRESHOLD`
  allocations (7.3 ms). Cycles are still collected, less often.
- When a memory budget refuses a call, the server runs a full collection (at most one a
  second, `collect_under_pressure`). A refused call's exception is caught by gRPC's own
  frames, which its traceback holds, and they it: a cycle only a full pass frees, holding what
  the call had read (the translation now drops the traceback, which cuts the worst of it).
  Before either, with 8 customers streaming 4 MiB batches into a full budget that garbage
  took the server to 2.2 GB, and with the young threshold raised 8 customers' snapshots at
  once to 3.6 GB; now 594 and 463 MB (`python -m bench.memory`).
"""

from __future__ import annotations

import gc
import threading
import time

YOUNG_THRESHOLD = 50_000
PRESSURE_GAP_S = 1.0  # at most one collection a second under memory pressure

_pressure_lock = threading.Lock()
_last_pressure = -PRESSURE_GAP_S


def tune_for_serving() -> None:
    """Collect what start-up left, freeze the rest, and make young passes rarer (call once, ready)."""
    gc.collect()  # garbage now would otherwise be frozen for the life of the process
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)


def collect_under_pressure() -> bool:
    """A full collection now, unless one ran less than `PRESSURE_GAP_S` ago; True if it ran.

    For a memory budget that refuses a call: cyclic garbage the budget cannot see (refused
    calls' exceptions and the frames they hold) may be what it lacks.
    """
    global _last_pressure
    now = time.monotonic()
    with _pressure_lock:
        if now - _last_pressure < PRESSURE_GAP_S:
            return False
        _last_pressure = now
    gc.collect()
    return True
