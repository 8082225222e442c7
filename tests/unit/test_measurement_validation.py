"""Bulk validation of a measurement batch and the month arithmetic behind partitions (no database)."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest

from fleet_server.domain.measurements import validate_batch
from fleet_server.errors import MAX_LISTED_VIOLATIONS, InvalidArgument
from fleet_server.store import partitions
from fleet_server.store.measurements import MeasurementBatch, months_of
from fleet_server.store.timestamps import from_pg_micros, to_pg_micros

NOW = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
T = datetime(2025, 6, 1, tzinfo=UTC)


def batch(
    rows: list[tuple[int, str, datetime, float, datetime]], unset: frozenset[tuple[int, str]] = frozenset()
) -> MeasurementBatch:
    return MeasurementBatch(
        device_ids=[r[0] for r in rows],
        metrics=[r[1] for r in rows],
        times=[to_pg_micros(r[2]) for r in rows],
        values=[r[3] for r in rows],
        received=[to_pg_micros(r[4]) for r in rows],
        is_unset=lambda i, f: (i, f) in unset,
    )


def good(n: int = 3) -> list[tuple[int, str, datetime, float, datetime]]:
    return [(i + 1, "energy_kwh", T + timedelta(minutes=i), 1.5, T) for i in range(n)]


def violations(b: MeasurementBatch) -> list[str]:
    with pytest.raises(InvalidArgument) as raised:
        validate_batch(b, NOW)
    return [str(v) for v in raised.value.violations]


def test_a_good_batch_and_an_empty_batch_pass():
    validate_batch(batch(good()), NOW)
    validate_batch(batch([]), NOW)


def test_times_round_trip_through_postgres_microseconds():
    moment = datetime(2024, 2, 29, 23, 59, 59, 999_999, tzinfo=UTC)
    assert to_pg_micros(datetime(2000, 1, 1, tzinfo=UTC)) == 0
    assert from_pg_micros(to_pg_micros(moment)) == moment


def test_each_rule_names_row_and_field():
    rows = good(8)
    rows[1] = (0, "energy_kwh", T, 1.0, T)
    rows[2] = (3, "Energy", T, 1.0, T)
    rows[3] = (4, "energy_kwh", T, math.nan, T)
    rows[4] = (5, "energy_kwh", datetime(1999, 12, 31, tzinfo=UTC), 1.0, T)
    rows[5] = (6, "energy_kwh", T, 1.0, NOW + timedelta(days=1, microseconds=1))
    rows[6] = (7, "energy_kwh", datetime(1970, 1, 1, tzinfo=UTC), 1.0, T)
    assert violations(batch(rows, unset=frozenset({(6, "time")}))) == [
        "measurements[1].device_id: must be positive",
        "measurements[2].metric: must match [a-z][a-z0-9_]{0,62}",
        "measurements[3].value: must be finite and within ±1e15",
        "measurements[4].time: must not be before 2000-01-01T00:00:00Z",
        "measurements[5].received_at: must not be more than 1 day in the future",
        "measurements[6].time: must be set",
    ]


def test_exactly_one_day_ahead_is_still_accepted():
    validate_batch(batch([(1, "m", NOW + timedelta(days=1), 1.0, NOW + timedelta(days=1))]), NOW)


@pytest.mark.parametrize("metric", ["a", "power_w", "x" + "y" * 62, "a1_2"])
def test_valid_metric_names(metric):
    validate_batch(batch([(1, metric, T, 1.0, T)]), NOW)


@pytest.mark.parametrize("metric", ["", "_a", "1a", "a-b", "aB", "a" * 64, "é"])
def test_invalid_metric_names(metric):
    assert violations(batch([(1, metric, T, 1.0, T)])) == [
        "measurements[0].metric: must match [a-z][a-z0-9_]{0,62}"
    ]


def test_values_up_to_the_bound_are_accepted():
    validate_batch(batch([(1, "m", T, 1e15, T), (2, "m", T, -1e15, T), (3, "m", T, 5e-324, T)]), NOW)


@pytest.mark.parametrize(
    "value", [1e308, -1e308, math.nextafter(1e15, math.inf), -1.5e15, math.inf, math.nan]
)
def test_values_beyond_the_bound_are_refused(value):
    assert violations(batch([(1, "m", T, 1.0, T), (2, "m", T, value, T)])) == [
        "measurements[1].value: must be finite and within ±1e15"
    ]


def test_many_bad_rows_list_the_first_and_count_all():
    rows = [(i + 1, "m", T, math.inf, T) for i in range(MAX_LISTED_VIOLATIONS + 15)]
    with pytest.raises(InvalidArgument) as raised:
        validate_batch(batch(rows), NOW)
    assert [v.field for v in raised.value.violations] == [
        f"measurements[{i}].value" for i in range(MAX_LISTED_VIOLATIONS)
    ]
    assert (
        raised.value.message
        == f"measurements[0].value: must be finite and within ±1e15 (and {MAX_LISTED_VIOLATIONS + 14} more)"
    )


def test_months_touched_by_a_batch():
    rows = [
        (1, "m", datetime(2021, 1, 31, 23, 59, 59, tzinfo=UTC), 1.0, T),
        (1, "m", datetime(2021, 3, 1, tzinfo=UTC), 1.0, T),
        (1, "m", datetime(2021, 1, 1, tzinfo=UTC), 1.0, T),
    ]
    months = months_of(batch(rows))
    assert sorted(partitions.partition_name(m) for m in months) == [
        "measurements_p202101",
        "measurements_p202103",
    ]
    assert [partitions.month_start(m) for m in sorted(months)] == [
        datetime(2021, 1, 1, tzinfo=UTC),
        datetime(2021, 3, 1, tzinfo=UTC),
    ]
    assert partitions.month_start(max(months) + 10) == datetime(2022, 1, 1, tzinfo=UTC)
