"""Bounded memory over the wire, at small scale: a snapshot's byte budget, one customer's share of
the process's snapshot bytes, the process's snapshot and batch bytes, and text at its limit.

Every refusal is answered within seconds (the rest of the stream is never waited for), writes
nothing, gives its bytes back, and leaves the server serving everyone else.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest
from fleet.v1 import ingest_service_pb2 as ingest_pb
from google.rpc import error_details_pb2
from sqlalchemy import Engine, text

from fleet_server.domain.memory import BATCH_RETRY_MS, SNAPSHOT_RETRY_MS, resident_cost
from tests.support.clients import Stubs, bearer, error_reason, rejected, rich_status
from tests.support.inprocess import InProcessServer
from tests.support.measurements import count_rows, push_until_error, reading, request
from tests.support.reference_data import counts, db_state, device, municipality, push, reference_tariff, site

# A site message of this many sites, each with a 200-character address, is about 22 KB.
SITES_PER_MESSAGE = 100
BUDGET = 100_000


def _sites_message(first: int) -> ingest_pb.PushSitesRequest:
    return ingest_pb.PushSitesRequest(
        sites=[site(i, address="A" * 200) for i in range(first, first + SITES_PER_MESSAGE)]
    )


def _messages(count: int) -> list[ingest_pb.PushSitesRequest]:
    return [_sites_message(1 + i * SITES_PER_MESSAGE) for i in range(count)]


def _size(messages: list[ingest_pb.PushSitesRequest]) -> int:
    return sum(m.ByteSize() for m in messages)


def _cost(messages: list[ingest_pb.PushSitesRequest]) -> int:
    """What the server charges to its snapshot memory for `messages`."""
    return sum(resident_cost(m.ByteSize(), len(m.sites)) for m in messages)


def _error_info(error: grpc.RpcError) -> dict[str, str]:
    status = rich_status(error)
    for detail in status.details if status else []:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            return dict(info.metadata)
    return {}


def _retry_after_ms(error: grpc.RpcError) -> int | None:
    value = dict(error.trailing_metadata() or ()).get("retry-after-ms")
    return None if value is None else int(value)


class OpenSnapshot:
    """A PushSites stream that sends `messages` and then stays open until `close` (or `cancel`)."""

    def __init__(self, stubs: Stubs, token: str, messages: list[ingest_pb.PushSitesRequest]) -> None:
        self._release = threading.Event()
        self.sent = 0

        def requests() -> Iterator[ingest_pb.PushSitesRequest]:
            for message in messages:
                self.sent += 1
                yield message
            self._release.wait(20)

        self.call = stubs.ingest.PushSites.future(requests(), metadata=bearer(token), timeout=30)

    def close(self) -> Any:
        self._release.set()
        return self.call.result(timeout=30)

    def cancel(self) -> None:
        self.call.cancel()
        self._release.set()


def _wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 10
    while not condition():
        assert time.monotonic() < deadline, f"never: {what}"
        time.sleep(0.01)


def _endless_sites() -> Iterator[ingest_pb.PushSitesRequest]:
    """The report's stream at small scale: messages forever, never half-closed."""
    first = 1
    while True:
        yield _sites_message(first)
        first += SITES_PER_MESSAGE


@pytest.fixture
def small(make_server: Callable[..., InProcessServer]) -> Iterator[tuple[InProcessServer, Stubs]]:
    server = make_server(max_snapshot_bytes=BUDGET)
    stubs = Stubs.connect(server.target)
    yield server, stubs
    stubs.close()


def test_a_snapshot_over_its_byte_budget_is_refused_at_once_and_writes_nothing(small, new_customer, engine):
    server, stubs = small
    acme, other = new_customer("ACME"), new_customer("OTHER")
    push(stubs, acme.token, "sites", [site(1), site(2)])
    before = db_state(engine)

    started = time.monotonic()
    error = rejected(
        lambda: stubs.ingest.PushSites(_endless_sites(), metadata=bearer(acme.token), timeout=20)
    )
    assert time.monotonic() - started < 5
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert error.details() == f"snapshot exceeds {BUDGET:,} bytes (the server's --max-snapshot-bytes)"
    assert error_reason(error) == "SNAPSHOT_TOO_LARGE"
    assert _error_info(error) == {"limit": "bytes", "max": str(BUDGET)}
    assert _retry_after_ms(error) is None  # the same snapshot will never fit: no retry hint
    assert db_state(engine) == before
    assert server.app.snapshot_memory.held == 0

    # The server goes on serving: the refused customer's next snapshot, and everyone else's.
    messages = _messages(2)
    reply = stubs.ingest.PushSites(iter(messages), metadata=bearer(acme.token), timeout=10)
    assert counts(reply) == (200, 198, 2, 0, 0)
    reply = push(stubs, other.token, "sites", [site(7)])
    assert counts(reply) == (1, 1, 0, 0, 0)


def test_the_budget_counts_every_message_of_the_stream(small, new_customer, engine):
    """Small messages add up: the fifth 22 KB message takes the stream over 100 KB."""
    _, stubs = small
    acme = new_customer("ACME")
    messages = _messages(5)
    assert _size(messages[:4]) <= BUDGET < _size(messages)
    error = rejected(lambda: stubs.ingest.PushSites(iter(messages), metadata=bearer(acme.token), timeout=10))
    assert error_reason(error) == "SNAPSHOT_TOO_LARGE"
    reply = stubs.ingest.PushSites(iter(messages[:4]), metadata=bearer(acme.token), timeout=10)
    assert counts(reply)[:2] == (400, 400)


def test_one_customer_s_snapshots_share_one_snapshot_s_worth(make_server, new_customer, engine):
    """A customer's streams together hold no more than one full snapshot costs (here 400 rows
    and 100 KB: 360 KB charged); another customer is not held back by it."""
    server = make_server(max_snapshot_bytes=BUDGET, max_snapshot_rows=4 * SITES_PER_MESSAGE)
    stubs = Stubs.connect(server.target)
    try:
        acme, other = new_customer("ACME"), new_customer("OTHER")
        assert _cost(_messages(4)) <= resident_cost(BUDGET, 4 * SITES_PER_MESSAGE) < _cost(_messages(5))
        first = OpenSnapshot(stubs, acme.token, _messages(3))
        _wait_until(
            lambda: server.app.snapshot_memory.held == _cost(_messages(3)), "the first stream is held"
        )
        before = db_state(engine)

        error = rejected(
            lambda: stubs.ingest.PushSites(iter(_messages(2)), metadata=bearer(acme.token), timeout=10)
        )
        assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert error_reason(error) == "MEMORY_BUSY"
        assert _error_info(error) == {"budget": "reference-data snapshots", "scope": "customer"}
        assert _retry_after_ms(error) == SNAPSHOT_RETRY_MS
        assert db_state(engine) == before

        reply = stubs.ingest.PushSites(iter(_messages(3)), metadata=bearer(other.token), timeout=10)
        assert counts(reply)[:2] == (300, 300)

        assert counts(first.close())[:2] == (300, 300)
        assert server.app.snapshot_memory.held == 0
    finally:
        stubs.close()


def test_the_process_holds_at_most_its_snapshot_bytes(make_server, new_customer, engine):
    server = make_server(max_snapshot_bytes=BUDGET, max_snapshot_memory_bytes=_cost(_messages(3)) + 30_000)
    stubs = Stubs.connect(server.target)
    try:
        acme, other = new_customer("ACME"), new_customer("OTHER")
        first = OpenSnapshot(stubs, acme.token, _messages(3))
        _wait_until(
            lambda: server.app.snapshot_memory.held == _cost(_messages(3)), "the first stream is held"
        )
        before = db_state(engine)

        messages = _messages(2)
        started = time.monotonic()
        error = rejected(
            lambda: stubs.ingest.PushSites(iter(messages), metadata=bearer(other.token), timeout=10)
        )
        assert time.monotonic() - started < 5
        assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert error_reason(error) == "MEMORY_BUSY"
        assert _error_info(error) == {"budget": "reference-data snapshots", "scope": "server"}
        assert _retry_after_ms(error) == SNAPSHOT_RETRY_MS
        assert db_state(engine) == before
        # Small snapshots still fit beside it, and measurements have a budget of their own.
        assert counts(push(stubs, other.token, "municipalities", [municipality(5)]))[:2] == (1, 1)
        acks, failed = push_until_error(stubs, other.token, [request(1, [reading(1, _hour(), 1.0)])])
        assert failed is None
        assert [a.accepted for a in acks] == [1]

        assert counts(first.close())[:2] == (300, 300)
        assert server.app.snapshot_memory.held == 0
        # Retried once the first stream is done, it fits.
        reply = stubs.ingest.PushSites(iter(messages), metadata=bearer(other.token), timeout=10)
        assert counts(reply)[:2] == (200, 200)
    finally:
        stubs.close()


def test_a_broken_stream_gives_its_bytes_back(small, new_customer, engine):
    server, stubs = small
    acme = new_customer("ACME")
    before = db_state(engine)
    stream = OpenSnapshot(stubs, acme.token, [_sites_message(1)])
    _wait_until(lambda: server.app.snapshot_memory.held == _cost(_messages(1)), "the stream is held")
    stream.cancel()
    _wait_until(lambda: server.app.snapshot_memory.held == 0, "the bytes are given back")
    assert db_state(engine) == before


def _hour() -> datetime:
    return datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)


def _batch(batch_id: int, device_id: int, rows: int = 200) -> ingest_pb.PushMeasurementsRequest:
    start = _hour()
    return request(batch_id, [reading(device_id, start + timedelta(seconds=i), 1.0) for i in range(rows)])


def _stall_writes(engine: Engine, customer_id: int) -> tuple[Any, Any]:
    """Lock the customer's row so its batch writes wait (they hold it FOR KEY SHARE first)."""
    conn = engine.connect()
    transaction = conn.begin()
    conn.execute(text("SELECT 1 FROM fleet.customers WHERE id = :id FOR UPDATE"), {"id": customer_id})
    return conn, transaction


def test_the_process_holds_at_most_its_batch_bytes(make_server, new_customer, engine):
    """Batches waiting for the database count until written; past the budget a batch is refused
    with a retry hint, the batches before it are acknowledged, and the retry goes through."""
    one = resident_cost(_batch(1, 1).ByteSize(), 200)
    server = make_server(max_batch_memory_bytes=2 * one + one // 2)
    stubs = Stubs.connect(server.target)
    acme, other = new_customer("ACME"), new_customer("OTHER")
    conn, transaction = _stall_writes(engine, acme.id)
    try:
        held = stubs.ingest.PushMeasurements(
            iter([_batch(1, 1), _batch(2, 2)]), metadata=bearer(acme.token), timeout=30
        )
        _wait_until(lambda: server.app.batch_memory.held == 2 * one, "two batches are held")

        started = time.monotonic()
        acks, error = push_until_error(stubs, other.token, [_batch(1, 3)])
        assert time.monotonic() - started < 5
        assert acks == []
        assert error is not None
        assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert error_reason(error) == "MEMORY_BUSY"
        assert _error_info(error) == {"budget": "measurement batches", "scope": "server"}
        assert _retry_after_ms(error) == BATCH_RETRY_MS
    finally:
        transaction.rollback()
        conn.close()
    assert [a.accepted for a in held] == [200, 200]
    _wait_until(lambda: server.app.batch_memory.held == 0, "the bytes are given back")
    acks, error = push_until_error(stubs, other.token, [_batch(1, 3)])
    assert error is None
    assert [a.accepted for a in acks] == [200]
    assert count_rows(engine) == 600
    stubs.close()


def test_text_at_its_length_limit_is_stored(stubs, new_customer, engine):
    """256 characters (768 bytes of euro signs) in every text field, a 32-character zone: accepted."""
    acme = new_customer("ACME")
    limit = "€" * 256
    zone = "America/Argentina/ComodRivadavia"
    push(stubs, acme.token, "sites", [site(1, name=limit, address=limit, timezone=zone)])
    push(stubs, acme.token, "devices", [device(1, 1, name=limit, serial_number=limit, kind=limit)])
    push(stubs, acme.token, "municipalities", [municipality(5, name=limit, region=limit)])
    tariff = reference_tariff(name=limit)
    tariff.periods[0].name = limit
    push(stubs, acme.token, "tariffs", [tariff])
    state = db_state(engine)
    assert state["sites"][0][2:5] == (limit, limit, zone)
    assert state["devices"][0][3:] == (limit, limit, limit)
    assert state["municipalities"][0][2:] == (limit, limit)
    assert state["tariffs"][0][3] == limit
    assert {row[3] for row in state["tariff_periods"]} == {limit, "Off-Peak"}
