"""A real `fleet-server` killed with SIGKILL in the middle of a measurement stream.

Every acknowledged batch must be in the database afterwards, no batch may be half-written, the
rollups must agree with the raw rows, and after a restart the same customer can stream again
(the dead process's stream lock went with its connection): re-sending everything stores exactly
the batches that were lost and counts the others as duplicates.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import grpc
import pytest
from fleet.v1 import ingest_service_pb2 as ipb
from fleet.v1 import ingest_service_pb2_grpc
from sqlalchemy import Engine, text

from tests.support.clients import bearer
from tests.support.measurements import reading, request
from tests.support.process import ServerProcess

pytestmark = pytest.mark.e2e

T0 = datetime(2024, 2, 1, tzinfo=UTC)
BATCHES = 80
ROWS = 500
KILL_AFTER_ACKS = 5


def _batches() -> list[ipb.PushMeasurementsRequest]:
    """Batch b holds the 500 readings of device b: a batch is identifiable in the table."""
    return [
        request(b, [reading(b, T0 + i * timedelta(minutes=5), float(i % 7)) for i in range(ROWS)])
        for b in range(1, BATCHES + 1)
    ]


def _per_device(engine: Engine, customer_id: int) -> tuple[dict[int, int], dict[int, int]]:
    """Rows per device in the raw table and in the rollups, read in one snapshot."""
    with engine.connect().execution_options(isolation_level="REPEATABLE READ") as conn, conn.begin():
        raw = conn.execute(
            text("SELECT device_id, count(*) FROM fleet.measurements WHERE customer_id = :c GROUP BY 1"),
            {"c": customer_id},
        ).all()
        rolled = conn.execute(
            text(
                "SELECT device_id, sum(count) FROM fleet.measurement_rollups_hourly "
                "WHERE customer_id = :c GROUP BY 1"
            ),
            {"c": customer_id},
        ).all()
    return {int(d): int(n) for d, n in raw}, {int(d): int(n) for d, n in rolled}


def _stream_until_killed(
    server: ServerProcess, token: str, batches: list[ipb.PushMeasurementsRequest]
) -> tuple[list[int], grpc.RpcError]:
    """Stream every batch at full speed; SIGKILL the server after a few acknowledgements."""
    acked: list[int] = []
    channel = grpc.insecure_channel(server.target)
    stub = ingest_service_pb2_grpc.FleetIngestServiceStub(channel)
    try:
        for ack in stub.PushMeasurements(iter(batches), metadata=bearer(token), timeout=60):
            acked.append(ack.batch_id)
            if len(acked) == KILL_AFTER_ACKS:
                assert server.proc is not None
                server.proc.kill()  # no graceful stop: batches are in flight
    except grpc.RpcError as error:
        return acked, error
    finally:
        channel.close()
    raise AssertionError("the stream outlived its server")


def test_acknowledged_batches_survive_sigkill_and_none_is_half_written(database_url, new_customer, engine):
    customer = new_customer("ACME")
    batches = _batches()
    server = ServerProcess(database_url).start()
    try:
        assert server.backends() > 0  # its connections are named: settle() below can see them go
        acked, ended = _stream_until_killed(server, customer.token, batches)
    finally:
        server.kill()
    assert ended.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED)
    server.settle()  # a batch the dead server had sent COMMIT for may still land until then

    raw, rolled = _per_device(engine, customer.id)
    assert acked == list(range(1, len(acked) + 1))
    assert len(acked) >= KILL_AFTER_ACKS
    assert all(raw.get(b) == ROWS for b in acked)  # every acknowledged batch is there
    assert set(raw.values()) <= {ROWS}  # no batch half-written
    assert len(raw) < BATCHES  # the kill did interrupt the stream
    assert rolled == raw  # rollups exactly in step with the rows

    with ServerProcess(database_url) as restarted:
        channel = grpc.insecure_channel(restarted.target)
        stub = ingest_service_pb2_grpc.FleetIngestServiceStub(channel)
        acks = list(stub.PushMeasurements(iter(batches), metadata=bearer(customer.token), timeout=60))
        channel.close()

    stored = set(raw)
    assert [(a.batch_id, a.accepted, a.duplicates) for a in acks] == [
        (b, 0, ROWS) if b in stored else (b, ROWS, 0) for b in range(1, BATCHES + 1)
    ]
    raw, rolled = _per_device(engine, customer.id)
    assert raw == rolled == {b: ROWS for b in range(1, BATCHES + 1)}
