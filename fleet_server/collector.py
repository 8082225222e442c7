"""The cyclic garbage collector, tuned for the two kinds of process the server runs.

Why: CPython runs a young-generation pass every 700 net allocations of container objects, and
every so often a full pass over every tracked object. Decoding a 5,000-row measurement batch
makes about 25,000 short-lived container objects (a tuple and two Timestamp wrappers a row),
all of which die by reference counting moments later; in a process that holds the server's
modules, metadata and descriptors (about 90,000 tracked objects at start), the passes they set
off took 60 % of the decode: 18.5 ms for 5,000 rows, 7.3 ms with no collector (docs/DESIGN.md,
Performance). Under a fleet every core is busy, so that was rows per second lost.

- A serving process freezes what start-up made (`gc.freeze()`: a pass never walks it again) and
  otherwise keeps the collector's defaults: 9.5 ms for the same decode. Raising its young
  threshold too (50,000) was measured and rejected: the server does make cyclic garbage that
  holds big things — an exception's traceback keeps its frames, and a frame its batch — and
  collected 70 times less often that let 8 customers' snapshots at once take 3.6 GB instead of
  about 600 MB (`python -m bench.memory`).
- When a memory budget refuses a call, the server runs a full collection (at most one a
  second, `collect_under_pressure`). A refused call's exception is caught by gRPC's own
  frames, which its traceback holds, and they it: a cycle that only a full pass frees, holding
  what the call had read. With 8 customers streaming 4 MiB batches into a full budget that
  garbage took the server to 2.2 GB (the budgets count what calls hold, not what they left);
  collected when the budget is full, the peak is about 600 MB (`python -m bench.memory`).
- The decoding helper does nothing but turn bytes into lists, makes no cycles worth the name,
  and holds one batch at a time, so it also runs a young pass only every `HELPER_THRESHOLD`
  allocations: 7.3 ms, as with no collector at all.
"""

from __future__ import annotations

import gc
import threading
import time

HELPER_THRESHOLD = 50_000
PRESSURE_GAP_S = 1.0  # at most one collection a second under memory pressure

_pressure_lock = threading.Lock()
_last_pressure = -PRESSURE_GAP_S


def freeze_start_up() -> None:
    """Collect what start-up left as garbage, then freeze the rest (call once, ready to serve)."""
    gc.collect()  # garbage now would otherwise be frozen for the life of the process
    gc.freeze()


def tune_for_decoding() -> None:
    """`freeze_start_up`, and young-generation passes every `HELPER_THRESHOLD` allocations."""
    freeze_start_up()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(HELPER_THRESHOLD, middle, old)


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
