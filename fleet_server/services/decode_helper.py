"""Big measurement batches decoded in a helper process, off the event loop's thread.

Why: decoding a batch into columns is Python work, about 7 µs a row. With ten back-fills of
5,000-row batches (`make load`) that was more than half of the event loop's time, and the loop
was on the CPU in 86 % of samples; grpc.aio starts new calls on that loop, so a live portal's
call waited p50 3 s before its servicer ran (its own steps took tens of milliseconds). Giving
the loop a turn between chunks (`ingest_wire.decode_batch_yielding`) spreads the work but does
not remove it. Here a batch of `OFFLOAD_ROWS` rows or more is serialised again (C, about a
millisecond for 5,000 rows), decoded in a helper process, and its columns come back as plain
lists; the loop's share of it is a fraction of a millisecond per thousand rows.

The helper is started on first use (spawned, never forked: this process runs gRPC's threads)
and shared by everything in the process. Whatever goes wrong there — a batch the rules refuse,
a timestamp left unset (its error names the field, which needs the message), a helper that
died — the batch is decoded here instead, the usual way, so the caller sees exactly the answer
it would have had.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from fleet.v1 import ingest_service_pb2 as ingest_pb

from fleet_server import collector
from fleet_server.db.scheduler import BULK_ROWS
from fleet_server.errors import FleetError
from fleet_server.services import ingest_wire
from fleet_server.store.measurements import MeasurementBatch

_LOGGER = logging.getLogger(__name__)

OFFLOAD_ROWS = BULK_ROWS  # the scheduler's bulk size: a live batch is decoded on the loop

Columns = tuple[list[int], list[str], list[int], list[float], list[int]]

_WATCH_S = 0.5  # how often the helper checks that the server that started it still runs

_pool: ProcessPoolExecutor | None = None
_pool_lock = threading.Lock()


def _helper() -> ProcessPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ProcessPoolExecutor(
                max_workers=1, mp_context=multiprocessing.get_context("spawn"), initializer=_detach
            )
        return _pool


def _detach() -> None:
    """In the helper, first: let go of the server's standard streams, and end with the server.

    A supervisor, a test or a shell waiting for the server's output to close must not wait for
    the helper too; and a server killed with SIGKILL must not leave its helper behind (the
    helper holds both ends of its task pipe, so it would never read an end of file).
    """
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    os.close(devnull)
    server = os.getppid()

    def watch() -> None:
        while os.getppid() == server:
            time.sleep(_WATCH_S)
        os._exit(0)

    threading.Thread(target=watch, name="decode-helper-watch", daemon=True).start()
    collector.tune_for_serving()


def _forget(pool: ProcessPoolExecutor) -> None:
    """Drop a broken helper; the next big batch starts a new one."""
    global _pool
    with _pool_lock:
        if _pool is pool:
            _pool = None
    pool.shutdown(wait=False, cancel_futures=True)


def decode_columns(data: bytes) -> Columns | None:
    """In the helper: the serialised request's rows as columns, or None when the caller must
    decode it itself (a batch the rules refuse, or a timestamp that reads as unset)."""
    request = ingest_pb.PushMeasurementsRequest.FromString(data)
    try:
        batch = ingest_wire.decode_batch(request)
    except FleetError:
        return None
    epoch = ingest_wire.UNSET_STAMP
    if min(batch.times, default=0) <= epoch or min(batch.received, default=0) <= epoch:
        return None  # maybe a timestamp left unset: its error names the field, from the message
    names: dict[str, str] = {}  # one string per metric name: the lists travel pickled
    metrics = [names.setdefault(name, name) for name in batch.metrics]
    return batch.device_ids, metrics, batch.times, batch.values, batch.received


async def decode_batch(request: ingest_pb.PushMeasurementsRequest) -> MeasurementBatch:
    """The request's rows as columns: a big batch in the helper, a small one (or any the helper
    cannot answer for) here, a chunk per turn of the loop."""
    if len(request.measurements) < OFFLOAD_ROWS:
        return await ingest_wire.decode_batch_yielding(request)
    pool = _helper()
    try:
        columns = await asyncio.get_running_loop().run_in_executor(
            pool, decode_columns, request.SerializeToString()
        )
    except BrokenProcessPool:
        _LOGGER.warning("the batch decoding helper process died; starting another")
        _forget(pool)
        columns = None
    except RuntimeError as exc:  # the pool was shut down (the process is exiting)
        _LOGGER.info("batch decoding helper unavailable: %s", exc)
        columns = None
    if columns is None:
        return await ingest_wire.decode_batch_yielding(request)
    devices, metrics, times, values, received = columns
    return MeasurementBatch(devices, metrics, times, values, received, is_unset=_never_unset)


def _never_unset(index: int, field: str) -> bool:
    return False
