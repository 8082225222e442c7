"""SqlSource over a SQLite portal: the keyset pages, the `until` window, reference reads, time zones."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, create_engine, insert

from fleet_client import portal_schema as t
from fleet_client.rows import Cursor, MeasurementRow, PeriodRow
from fleet_client.source import SqlSource

BASE = datetime(2025, 6, 1, tzinfo=UTC)


@pytest.fixture
def portal(tmp_path: Path):
    engine = create_engine(f"sqlite:///{tmp_path / 'portal.db'}")
    t.create_portal_schema(engine)
    yield engine
    engine.dispose()


def _rows(keys: set[tuple[int, int, str, int]]) -> list[dict[str, object]]:
    return [
        {
            "device_id": device,
            "metric": metric,
            "time": BASE + timedelta(minutes=minute),
            "value": float(minute),
            "received_at": BASE + timedelta(seconds=received),
        }
        for received, device, metric, minute in keys
    ]


def _page_through(source: SqlSource, limit: int, until: datetime) -> list[MeasurementRow]:
    cursor: Cursor | None = None
    out: list[MeasurementRow] = []
    while True:
        page = source.measurements_after(cursor, limit, until=until)
        assert len(page) <= limit
        if not page:
            return out
        out.extend(page)
        cursor = Cursor.of(page[-1])


_KEYS = st.sets(
    st.tuples(
        st.integers(0, 5), st.integers(1, 4), st.sampled_from(["a", "b", "power_w"]), st.integers(0, 20)
    ),
    max_size=60,
)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(keys=_KEYS, limit=st.integers(1, 7), until_s=st.integers(-1, 6))
def test_pages_return_every_row_once_in_key_order(portal: Engine, keys, limit: int, until_s: int) -> None:
    # Many rows share a received_at; pages of a few rows cut through them anywhere.
    with portal.begin() as conn:
        conn.execute(t.measurements.delete())
        # The primary key is (device, metric, time): keep one row per key.
        unique = {(d, m, minute): (r, d, m, minute) for r, d, m, minute in keys}
        if unique:
            conn.execute(insert(t.measurements), _rows(set(unique.values())))
    until = BASE + timedelta(seconds=until_s)
    source = SqlSource(portal)
    got = _page_through(source, limit, until)
    expected = sorted(
        (BASE + timedelta(seconds=r), d, m, BASE + timedelta(minutes=minute))
        for r, d, m, minute in unique.values()
        if BASE + timedelta(seconds=r) <= until
    )
    assert [(row.received_at, row.device_id, row.metric, row.time) for row in got] == expected
    assert source.count_measurements_after(None, until=until) == len(expected)
    # The newest key is the last one a full walk returns: the split a back-fill ends at.
    assert source.newest_measurement(until=until) == (Cursor.of(got[-1]) if got else None)


def test_count_after_a_cursor(portal: Engine) -> None:
    with portal.begin() as conn:
        conn.execute(
            insert(t.measurements), _rows({(0, 1, "a", 0), (0, 1, "a", 1), (0, 2, "a", 0), (1, 1, "a", 2)})
        )
    source = SqlSource(portal)
    first = source.measurements_after(None, 2, until=BASE + timedelta(hours=1))
    assert source.count_measurements_after(Cursor.of(first[-1]), until=BASE + timedelta(hours=1)) == 2
    assert source.count_measurements_after(Cursor.of(first[-1]), until=BASE) == 1


def test_the_newest_key_respects_until_and_the_whole_key_order(portal: Engine) -> None:
    source = SqlSource(portal)
    assert source.newest_measurement(until=BASE + timedelta(days=1)) is None
    with portal.begin() as conn:
        conn.execute(
            insert(t.measurements),
            _rows({(0, 1, "a", 0), (1, 2, "a", 5), (1, 2, "b", 3), (1, 1, "power_w", 9), (2, 1, "a", 1)}),
        )
    assert source.newest_measurement(until=BASE + timedelta(seconds=1)) == Cursor(
        BASE + timedelta(seconds=1), 2, "b", BASE + timedelta(minutes=3)
    )
    assert source.newest_measurement(until=BASE + timedelta(seconds=5)) == Cursor(
        BASE + timedelta(seconds=2), 1, "a", BASE + timedelta(minutes=1)
    )
    assert source.newest_measurement(until=BASE - timedelta(seconds=1)) is None


def test_times_come_back_as_aware_utc(portal: Engine) -> None:
    plus2 = timezone(timedelta(hours=2))
    with portal.begin() as conn:
        conn.execute(
            insert(t.measurements),
            [
                # naive = UTC, as the schema documents; an aware value is converted to UTC.
                {
                    "device_id": 1,
                    "metric": "m",
                    "time": datetime(2025, 6, 1, 10),
                    "value": 1.0,
                    "received_at": datetime(2025, 6, 1, 12, 30, tzinfo=plus2),
                },
            ],
        )
    (row,) = SqlSource(portal).measurements_after(None, 10, until=BASE + timedelta(days=1))
    assert row.time == datetime(2025, 6, 1, 10, tzinfo=UTC)
    assert row.received_at == datetime(2025, 6, 1, 10, 30, tzinfo=UTC)
    assert row.time.utcoffset() == timedelta(0)


def test_reference_reads(portal: Engine) -> None:
    with portal.begin() as conn:
        conn.execute(insert(t.municipalities), [{"id": 3, "name": "City"}])
        conn.execute(insert(t.sites), [{"id": 1, "name": "Site"}])
        conn.execute(insert(t.devices), [{"id": 2, "site_id": 1, "name": "Meter"}])
        conn.execute(
            insert(t.tariffs),
            [
                {
                    "id": 5,
                    "municipality_id": 3,
                    "name": "Flat",
                    "effective_from": BASE,
                    "default_rate": Decimal("1.2345678"),
                    "fixed_charge": Decimal("0"),
                    "vat_percent": Decimal("15.5"),
                    "currency": "EUR",
                    "is_active": True,
                    "effective_to": None,
                },
                {
                    "id": 4,
                    "municipality_id": 3,
                    "name": "TOU",
                    "effective_from": BASE,
                    "effective_to": BASE + timedelta(days=30),
                    "default_rate": Decimal("2"),
                    "fixed_charge": Decimal("9.99"),
                    "vat_percent": Decimal("0"),
                    "currency": "EUR",
                    "is_active": False,
                },
            ],
        )
        conn.execute(
            insert(t.tariff_periods),
            [
                {
                    "tariff_id": 4,
                    "id": 2,
                    "name": "B",
                    "days_of_week": 1,
                    "start_time": "22:00",
                    "end_time": "06:00",
                    "rate": Decimal("0.5"),
                },
                {
                    "tariff_id": 4,
                    "id": 1,
                    "name": "A",
                    "days_of_week": 127,
                    "start_time": "06:00",
                    "end_time": "22:00",
                    "rate": Decimal("1.5"),
                },
            ],
        )
    source = SqlSource(portal)
    (site,) = source.sites()
    assert (site.address, site.timezone, site.municipality_id, site.tariff_id) == ("", "", None, None)
    assert source.devices()[0].site_id == 1
    assert source.municipalities()[0].region == ""
    tou, flat = source.tariffs()
    assert (tou.id, flat.id) == (4, 5)
    assert flat.default_rate == Decimal("1.2345678")
    assert flat.is_active is True
    assert flat.periods == ()
    assert tou.is_active is False
    assert tou.effective_to == BASE + timedelta(days=30)
    assert tou.periods == (
        PeriodRow(1, "A", 127, "06:00", "22:00", Decimal("1.5")),
        PeriodRow(2, "B", 1, "22:00", "06:00", Decimal("0.5")),
    )
