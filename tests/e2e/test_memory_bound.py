"""The real server when a client pushes faster than it writes: memory bounded by the server, not the client.

A customer's batch writes stall (its row is locked), so its stream stops being read once one
batch is being written and one waits. From then on only HTTP/2 flow control stands between the
client and the server's memory: the client must not get to hand over more batches, the server's
RSS must not grow with what the client tries to send, and other customers are served meanwhile.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from fleet.v1 import ingest_service_pb2 as ipb
from fleet.v1 import ingest_service_pb2_grpc
from fleet.v1 import resources_pb2 as res
from google.protobuf import timestamp_pb2
from sqlalchemy import Engine, text

from tests.support.clients import Stubs, bearer
from tests.support.process import ServerProcess
from tests.support.reference_data import push, site

pytestmark = pytest.mark.e2e

MIB = 1024 * 1024


def _rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def _stamp(value: datetime) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(value)
    return stamp


def _large_batch() -> ipb.PushMeasurementsRequest:
    """About 3.5 MB of valid rows (under the 4 MiB message limit)."""
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(days=5)
    received = _stamp(datetime.now(UTC))
    rows = [
        res.Measurement(
            device_id=1,
            metric="energy_kwh",
            time=_stamp(start + timedelta(seconds=i)),
            value=1.0,
            received_at=received,
        )
        for i in range(80_000)
    ]
    batch = ipb.PushMeasurementsRequest(batch_id=1, measurements=rows)
    assert 3 * MIB < batch.ByteSize() < 4 * MIB
    return batch


def test_a_client_pushing_faster_than_the_server_writes_cannot_fill_its_memory(
    database_url: str, engine: Engine, new_customer
) -> None:
    """The stream first runs freely (so gRPC has measured a fast link), then its writes stall."""
    acme, other = new_customer("ACME"), new_customer("OTHER")
    batch = _large_batch()
    handed_over = 0
    stop = threading.Event()

    def batches() -> Iterator[ipb.PushMeasurementsRequest]:
        nonlocal handed_over
        while not stop.is_set() and handed_over < 300:  # 300 x 3.5 MB: far more than any bound
            handed_over += 1
            yield batch

    with ServerProcess(database_url) as server, engine.connect() as lock:
        assert server.proc is not None
        channel = grpc.insecure_channel(server.target, options=[("grpc.max_send_message_length", 8 * MIB)])
        stub = ingest_service_pb2_grpc.FleetIngestServiceStub(channel)
        stubs = Stubs.connect(server.target)
        call = stub.PushMeasurements(batches(), metadata=bearer(acme.token), timeout=90)
        transaction = lock.begin()
        try:
            acks = iter(call)
            for _ in range(6):  # a few batches written: the link is known to be fast
                next(acks)
            lock.execute(text("SELECT 1 FROM fleet.customers WHERE id = :id FOR UPDATE"), {"id": acme.id})
            stalled_at = handed_over
            stalled_rss = _rss_mib(server.proc.pid)
            peak = stalled_rss
            deadline = time.monotonic() + 6
            while time.monotonic() < deadline:
                peak = max(peak, _rss_mib(server.proc.pid))
                time.sleep(0.05)
            # Another customer is served meanwhile, promptly.
            started = time.monotonic()
            push(stubs, other.token, "sites", [site(1)])
            assert time.monotonic() - started < 3
        finally:
            stop.set()
            call.cancel()
            transaction.rollback()
            stubs.close()
            channel.close()

    ahead = handed_over - stalled_at
    # At most: the batch being written, one queued, one read, one in the client's hands.
    assert ahead <= 6, f"after the stall the client handed {ahead} more batches of 3.5 MB to gRPC"
    assert peak - stalled_rss < 150, f"server RSS grew {peak - stalled_rss:.0f} MiB after the stall"
