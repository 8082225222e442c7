"""The cyclic garbage collector, tuned for a process that allocates many short-lived objects.

Why: CPython runs a young-generation pass every 700 net allocations of container objects, and
every so often a full pass over every tracked object. Decoding a 5,000-row measurement batch
makes about 25,000 such objects (a tuple and two Timestamp wrappers a row), all of which die by
reference counting moments later; in a process that holds the server's modules, metadata and
descriptors (about 90,000 tracked objects at start, more with a few hundred open streams), the
passes they set off took 60 % of the decode: 18.5 ms for 5,000 rows, 7.3 ms with no collector
(docs/DESIGN.md, Performance). Under a fleet every core is busy, so that is rows per second and
live latency lost, and a full pass holds the interpreter lock while the event loop waits.

Two steps, as large Python services take them:
- `gc.freeze()` once start-up is done: what exists then lives as long as the process, and no
  pass walks it again.
- the young generation's threshold raised from 700 to `YOUNG_THRESHOLD`: a batch's transient
  objects are freed by reference counting long before a pass would look at them. The collector
  still runs (cycles do happen: exceptions with tracebacks, futures and their callbacks), just
  less often; the older generations keep their defaults.
"""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 50_000


def tune_for_serving() -> None:
    """Freeze what start-up made and make young-generation passes rarer (call once, ready to serve)."""
    gc.collect()  # what start-up left as garbage goes now, not frozen forever
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)
