"""PushMeasurements through the wire: acknowledgements, duplicates, rejection, rollups, partitions."""

from __future__ import annotations

import math
import threading
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from sqlalchemy import text

from fleet_server.clock import FakeClock
from fleet_server.db.session import Database
from fleet_server.errors import MAX_LISTED_VIOLATIONS
from fleet_server.services.decode_helper import OFFLOAD_ROWS
from fleet_server.store import partitions
from tests.support.clients import Stubs, bad_request_fields, error_reason
from tests.support.measurements import (
    RECEIVED,
    HeldStream,
    count_rows,
    expected_buckets,
    push,
    push_until_error,
    reading,
    request,
    stored_rollups,
    stored_rows,
)

T0 = datetime(2025, 12, 1, 10, 0, tzinfo=UTC)
Q = timedelta(minutes=15)


def test_acks_in_order_with_accepted_and_duplicate_counts(stubs, new_customer, engine):
    customer = new_customer("ACME")
    first = [reading(d, T0 + i * Q, float(i)) for i in range(4) for d in (1, 2)]
    # Batch 2 repeats two keys of batch 1 (with other values) and one key inside itself.
    second = [
        reading(1, T0, 99.0),
        reading(2, T0 + Q, 99.0),
        reading(3, T0, 1.5),
        reading(3, T0, 7.0),
        reading(3, T0 + Q, 2.5),
    ]
    acks = push(stubs, customer.token, [request(11, first), request(7, second), request(12, [])])

    assert [(a.batch_id, a.accepted, a.duplicates) for a in acks] == [(11, 8, 0), (7, 2, 3), (12, 0, 0)]
    rows = stored_rows(engine, customer.id)
    assert len(rows) == 10
    assert (1, "energy_kwh", T0, 0.0) in rows  # first write wins across batches
    assert (3, "energy_kwh", T0, 1.5) in rows  # ... and inside one batch


def test_duplicates_never_count_twice_in_rollups(stubs, new_customer, engine):
    customer = new_customer("ACME")
    rows = [reading(1, T0 + i * Q, 2.0) for i in range(4)]
    push(stubs, customer.token, [request(1, rows), request(2, rows + rows)])

    assert stored_rollups(engine, customer.id) == {(1, "energy_kwh", T0): (4, 8.0, 2.0, 2.0)}


def test_late_backfill_is_in_its_hour_bucket_when_acknowledged(stubs, new_customer, engine):
    customer = new_customer("ACME")
    push(stubs, customer.token, [request(1, [reading(5, T0, 1.0), reading(5, T0 + Q, 3.0)])])
    late = datetime(2021, 3, 14, 15, 30, tzinfo=UTC)
    # A reading from 2021 received just now, plus one more for the hour already summarised.
    acks = push(
        stubs,
        customer.token,
        [request(2, [reading(5, late, 4.0, received=RECEIVED), reading(5, T0 + 2 * Q, -1.0)])],
    )

    assert acks[0].accepted == 2
    rollups = stored_rollups(engine, customer.id)
    assert rollups[(5, "energy_kwh", datetime(2021, 3, 14, 15, tzinfo=UTC))] == (1, 4.0, 4.0, 4.0)
    assert rollups[(5, "energy_kwh", T0)] == (3, 3.0, -1.0, 3.0)


def test_partitions_are_created_for_every_month_a_batch_touches(stubs, new_customer, engine, db):
    customer = new_customer("ACME")
    months = [datetime(2021, 1, 31, 23, 59, tzinfo=UTC), datetime(2021, 2, 1, tzinfo=UTC), T0]
    push(stubs, customer.token, [request(1, [reading(1, t, 1.0) for t in months])])

    names = db.transaction(partitions.list_partitions)
    assert {"measurements_p202101", "measurements_p202102", "measurements_p202512"} <= set(names)
    with engine.connect() as conn:
        placed = conn.execute(
            text("SELECT tableoid::regclass::text, time FROM fleet.measurements ORDER BY time")
        ).all()
    assert [p for p, _ in placed] == [
        "fleet_partitions.measurements_p202101",
        "fleet_partitions.measurements_p202102",
        "fleet_partitions.measurements_p202512",
    ]


def test_a_partition_dropped_behind_the_servers_back_is_recreated(stubs, new_customer, engine):
    customer = new_customer("ACME")
    old = datetime(2022, 6, 1, tzinfo=UTC)
    push(stubs, customer.token, [request(1, [reading(1, old, 1.0)])])
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE fleet_partitions.measurements_p202206"))

    acks = push(stubs, customer.token, [request(2, [reading(1, old, 2.0)])])

    assert acks[0].accepted == 1
    assert stored_rows(engine, customer.id) == {(1, "energy_kwh", old, 2.0)}


def test_two_customers_stream_into_the_same_new_month_concurrently(make_server, new_customer, engine):
    server = make_server()

    customers = [new_customer("ALPHA"), new_customer("BRAVO")]
    month = datetime(2023, 7, 1, tzinfo=UTC)
    results: dict[str, list[int]] = {}
    errors: list[BaseException] = []

    def stream(code: str, token: str) -> None:
        client = Stubs.connect(server.target)
        try:
            batches = [
                request(
                    b, [reading(d, month + (b * 50 + i) * Q, float(i)) for i in range(50) for d in (1, 2)]
                )
                for b in range(6)
            ]
            results[code] = [a.accepted for a in push(client, token, batches)]
        except BaseException as exc:
            errors.append(exc)
        finally:
            client.close()

    threads = [threading.Thread(target=stream, args=(c.code, c.token)) for c in customers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)

    assert not errors
    assert results == {"ALPHA": [100] * 6, "BRAVO": [100] * 6}
    for c in customers:
        assert len(stored_rows(engine, c.id)) == 600


def test_sync_status_records_the_batch_and_a_high_water_that_never_goes_back(stubs, new_customer, engine):
    customer = new_customer("ACME")
    newer, older = RECEIVED + timedelta(hours=1), RECEIVED - timedelta(days=3)
    push(stubs, customer.token, [request(1, [reading(1, T0, 1.0, received=newer), reading(2, T0, 1.0)])])
    push(stubs, customer.token, [request(2, [reading(1, T0 + Q, 1.0, received=older)])])

    with engine.connect() as conn:
        row = conn.execute(
            text(
                "SELECT last_received, high_water_received_at FROM fleet.sync_status "
                "WHERE customer_id = :c AND resource = 'measurements'"
            ),
            {"c": customer.id},
        ).one()
    assert row == (1, newer)


def test_sync_status_size_is_the_rows_of_the_whole_last_stream(stubs, new_customer, engine):
    customer = new_customer("ACME")

    def last_received() -> int:
        with engine.connect() as conn:
            return int(
                conn.scalar(
                    text(
                        "SELECT last_received FROM fleet.sync_status "
                        "WHERE customer_id = :c AND resource = 'measurements'"
                    ),
                    {"c": customer.id},
                )
            )

    push(
        stubs,
        customer.token,
        [
            request(1, [reading(1, T0, 1.0), reading(2, T0, 1.0)]),
            request(2, [reading(1, T0 + Q, 1.0), reading(2, T0 + Q, 1.0), reading(3, T0, 1.0)]),
        ],
    )
    assert last_received() == 5
    push(stubs, customer.token, [request(1, [reading(1, T0 + 2 * Q, 1.0)])])
    assert last_received() == 1


def test_one_customers_rows_never_reach_another(stubs, new_customer, engine):
    alpha, bravo = new_customer("ALPHA"), new_customer("BRAVO")
    push(stubs, alpha.token, [request(1, [reading(1, T0, 1.0)])])
    acks = push(stubs, bravo.token, [request(1, [reading(1, T0, 2.0)])])

    assert acks[0].accepted == 1  # same device, metric and time: another customer's key
    assert stored_rows(engine, alpha.id) == {(1, "energy_kwh", T0, 1.0)}
    assert stored_rows(engine, bravo.id) == {(1, "energy_kwh", T0, 2.0)}


NOW = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
TOO_EARLY = "must not be before 2000-01-01T00:00:00Z"
TOO_LATE = "must not be more than 1 day in the future"


def _unset(field: str, row: object) -> object:
    row.ClearField(field)  # type: ignore[attr-defined]
    return row


@pytest.mark.parametrize(
    ("bad_row", "field", "message"),
    [
        (reading(0, T0, 1.0), "device_id", "must be positive"),
        (reading(-4, T0, 1.0), "device_id", "must be positive"),
        (reading(1, T0, 1.0, metric="Energy"), "metric", "must match [a-z][a-z0-9_]{0,62}"),
        (reading(1, T0, 1.0, metric=""), "metric", "must match"),
        (reading(1, T0, 1.0, metric="a" * 64), "metric", "must match"),
        (reading(1, T0, 1.0, metric="9kwh"), "metric", "must match"),
        (reading(1, T0, math.nan), "value", "must be finite and within ±1e15"),
        (reading(1, T0, math.inf), "value", "must be finite and within ±1e15"),
        (reading(1, T0, -math.inf), "value", "must be finite and within ±1e15"),
        (_unset("time", reading(1, T0, 1.0)), "time", "must be set"),
        (_unset("received_at", reading(1, T0, 1.0)), "received_at", "must be set"),
        (reading(1, datetime(1999, 12, 31, 23, 59, tzinfo=UTC), 1.0), "time", TOO_EARLY),
        (reading(1, datetime(1970, 1, 1, tzinfo=UTC), 1.0), "time", TOO_EARLY),
        (reading(1, NOW + timedelta(days=1, seconds=1), 1.0), "time", TOO_LATE),
        (
            reading(1, T0, 1.0, received=NOW + timedelta(days=2)),
            "received_at",
            TOO_LATE,
        ),
    ],
)
@pytest.mark.parametrize("padding", [0, OFFLOAD_ROWS], ids=["live", "bulk"])
def test_a_bad_row_rejects_its_batch_whole_and_earlier_batches_stay(
    make_server, new_customer, engine, bad_row, field, message, padding
):
    """A bulk batch (decoded in the helper process) is refused exactly as a live one."""
    server = make_server(clock=FakeClock(NOW))
    client = Stubs.connect(server.target)
    customer = new_customer("ACME")
    good = request(1, [reading(1, T0 - Q, 1.0)])
    filler = [reading(5, T0 + i * Q, 1.0) for i in range(padding)]
    bad = request(2, [reading(2, T0, 1.0), reading(3, T0, 1.0), bad_row, reading(4, T0, 1.0), *filler])
    after = request(3, [reading(5, T0, 1.0)])

    acks, error = push_until_error(client, customer.token, [good, bad, after])
    client.close()

    assert [a.batch_id for a in acks] == [1]
    assert error is not None
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details().startswith(f"measurements[2].{field}: {message}")
    assert bad_request_fields(error) == [f"measurements[2].{field}"]
    assert stored_rows(engine, customer.id) == {(1, "energy_kwh", T0 - Q, 1.0)}
    assert count_rows(engine, "fleet.measurement_rollups_hourly") == 1


def test_every_bad_row_is_named_up_to_a_limit(stubs, new_customer, engine):
    customer = new_customer("ACME")
    rows = [reading(1, T0 + i * Q, math.nan if i % 2 else 1.0) for i in range(40)]
    rows[0] = reading(0, T0, 1.0, metric="BAD")

    _, error = push_until_error(stubs, customer.token, [request(1, rows)])

    assert error is not None
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    fields = bad_request_fields(error)
    assert fields[:3] == ["measurements[0].device_id", "measurements[0].metric", "measurements[1].value"]
    assert len(fields) == MAX_LISTED_VIOLATIONS < 22
    assert error.details() == "measurements[0].device_id: must be positive (and 21 more)"
    assert count_rows(engine) == 0


def test_a_deactivated_customer_cannot_push_on_a_stream_it_opened_before(stubs, new_customer, engine):
    customer = new_customer("ACME")
    held = HeldStream(stubs, customer.token, request(1, [reading(1, T0, 1.0)]))
    assert held.first_ack().accepted == 1
    with engine.begin() as conn:
        conn.execute(text("UPDATE fleet.customers SET is_active = false WHERE id = :c"), {"c": customer.id})

    acks, error = held.finish([request(2, [reading(1, T0 + Q, 1.0)])])

    assert acks == []
    assert error is not None
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert error_reason(error) == "CUSTOMER_INACTIVE"
    assert count_rows(engine) == 1


def test_writes_need_an_active_customer_even_after_authentication(new_customer, database_url, engine):
    from fleet_server.errors import Unauthenticated
    from fleet_server.store.measurements import BatchWriter, MeasurementBatch
    from fleet_server.store.partitions import Partitions
    from fleet_server.store.timestamps import to_pg_micros

    customer = new_customer("ACME")
    with engine.begin() as conn:
        conn.execute(text("UPDATE fleet.customers SET is_active = false WHERE id = :c"), {"c": customer.id})
    database = Database.from_url(database_url, pool_size=1)
    batch = MeasurementBatch([1], ["energy_kwh"], [to_pg_micros(T0)], [1.0], [to_pg_micros(T0)])
    writer = BatchWriter(database, Partitions(database))
    try:
        with pytest.raises(Unauthenticated) as raised:
            writer.write(customer.id, batch, NOW)
    finally:
        database.close()
    assert raised.value.reason == "CUSTOMER_INACTIVE"
    assert count_rows(engine) == 0


def test_rows_are_counted_for_the_access_log(stubs, new_customer, caplog):
    customer = new_customer("ACME")
    with caplog.at_level("INFO", logger="fleet_server.access"):
        push(stubs, customer.token, [request(1, [reading(1, T0, 1.0), reading(2, T0, 1.0)]), request(2, [])])
    lines = [r.getMessage() for r in caplog.records if "PushMeasurements" in r.getMessage()]
    assert any("rows=2" in line and "status=OK" in line for line in lines), lines


def test_buckets_match_python_for_a_mixed_push(stubs, new_customer, engine):
    customer = new_customer("ACME")
    rows = [
        (d, "power_w", T0 + i * Q + timedelta(seconds=d), float(i * d % 7)) for i in range(30) for d in (1, 2)
    ]
    push(
        stubs,
        customer.token,
        [
            request(b + 1, [reading(d, t, v, metric=m) for d, m, t, v in rows[b * 20 : (b + 1) * 20]])
            for b in range(3)
        ],
    )
    assert stored_rollups(engine, customer.id) == expected_buckets(rows, timedelta(hours=1))
