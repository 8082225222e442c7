"""Big batches decoded in the helper process give exactly what decoding them here gives."""

from __future__ import annotations

import asyncio
import os
from concurrent.futures.process import BrokenProcessPool
from datetime import UTC, datetime, timedelta

import pytest
from fleet.v1 import ingest_service_pb2 as ingest_pb

from fleet_server.domain.measurements import validate_batch
from fleet_server.errors import InvalidArgument
from fleet_server.services import decode_helper, ingest_wire
from fleet_server.store.measurements import MeasurementBatch
from tests.support.measurements import reading
from tests.support.measurements import request as batch_of

NOW = datetime(2026, 3, 1, tzinfo=UTC)


def _request(rows: int) -> ingest_pb.PushMeasurementsRequest:
    start = NOW - timedelta(days=30)
    return batch_of(
        1,
        (
            reading(
                1 + i % 7,
                start + timedelta(minutes=15 * i),
                i * 0.125 - 3,
                metric="energy_kwh" if i % 2 else "power_w",
                received=NOW,
            )
            for i in range(rows)
        ),
    )


def _columns(batch: MeasurementBatch) -> tuple[object, ...]:
    return batch.device_ids, batch.metrics, batch.times, batch.values, batch.received


def test_a_big_batch_comes_back_as_decoded_here() -> None:
    request = _request(decode_helper.OFFLOAD_ROWS + 500)
    offloaded = asyncio.run(decode_helper.decode_batch(request))
    assert _columns(offloaded) == _columns(ingest_wire.decode_batch(request))
    assert decode_helper.decode_columns(request.SerializeToString()) is not None  # the helper answers it


def test_a_refused_big_batch_gets_the_error_decoding_here_gives() -> None:
    request = _request(decode_helper.OFFLOAD_ROWS + 10)
    request.measurements[1_003].time.nanos = -1
    assert decode_helper.decode_columns(request.SerializeToString()) is None
    with pytest.raises(InvalidArgument) as here:
        ingest_wire.decode_batch(request)
    with pytest.raises(InvalidArgument) as offloaded:
        asyncio.run(decode_helper.decode_batch(request))
    assert str(offloaded.value) == str(here.value)
    assert "measurements[1003].time" in str(offloaded.value)


def test_an_unset_timestamp_in_a_big_batch_is_named() -> None:
    request = _request(decode_helper.OFFLOAD_ROWS + 10)
    request.measurements[17].ClearField("received_at")
    batch = asyncio.run(decode_helper.decode_batch(request))
    assert batch.is_unset is not None
    assert batch.is_unset(17, "received_at")
    with pytest.raises(InvalidArgument, match=r"measurements\[17\]\.received_at"):
        validate_batch(batch, NOW)


def test_a_dead_helper_is_replaced() -> None:
    request = _request(decode_helper.OFFLOAD_ROWS)
    expected = _columns(ingest_wire.decode_batch(request))
    assert _columns(asyncio.run(decode_helper.decode_batch(request))) == expected
    broken = decode_helper._helper()
    with pytest.raises(BrokenProcessPool):  # the helper exits under the call
        broken.submit(os._exit, 3).result(timeout=30)
    assert _columns(asyncio.run(decode_helper.decode_batch(request))) == expected  # decoded here
    assert decode_helper._helper() is not broken
    assert _columns(asyncio.run(decode_helper.decode_batch(request))) == expected  # a new helper
