"""Every answer is the same before and after compression, bit for bit, and chunks merge exactly.

Readings go over the wire into a real server; the answers of every query (raw, hour and day
points over ranges with partial edges, read whole and in chunks of a few points, the fleet
summary, costs under a time-of-use tariff in a DST zone, the detail view, fleet health's newest
readings) are taken, part of the data is compressed, then all of it, with late readings pushed
into compressed days in between; each time the answers must not change.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import text

from fleet_server.db.session import Database
from fleet_server.domain.compression import compress
from fleet_server.store import device_activity, metric_catalog
from fleet_server.store.measurement_reads import Bucket, MeasurementQuery, read_chunk
from tests.support import cold_answers as answers
from tests.support import reference_data as ref
from tests.support.clients import Stubs
from tests.support.measurements import push, reading, request

T0 = datetime(2024, 3, 20, tzinfo=UTC)  # the month turns, and Europe/Berlin's clocks go forward
DAYS = 25
METRICS = ("energy_kwh", "power_w")
_ZERO = timedelta(0)


def _readings() -> list[tuple[int, str, datetime, float]]:
    rows = []
    for device in (1, 2, 3):
        for step in range(DAYS * 24 * 4):
            if (step * device) % 37 == 5:  # gaps
                continue
            moment = T0 + timedelta(minutes=15 * step, seconds=device % 3)
            rows.append((device, "energy_kwh", moment, round(0.25 + ((step * 7 + device) % 13) * 0.113, 3)))
            rows.append((device, "power_w", moment, (step % 29 - 14) * 1234.567 / 7 if device != 2 else -0.0))
    rows.append((4, "energy_kwh", T0 + timedelta(days=2, minutes=3), 1e15))  # a device without a site
    return rows


def _push_reference(stubs: Stubs, token: str) -> None:
    ref.push(stubs, token, "municipalities", [ref.municipality(5)])
    tou = ref.reference_tariff(effective_from=ref.ts(datetime(2020, 1, 1, tzinfo=UTC)))
    ref.push(stubs, token, "tariffs", [tou])
    ref.push(
        stubs,
        token,
        "sites",
        [
            ref.site(1, timezone="Europe/Berlin", municipality_id=5, tariff_id=10),
            ref.site(2, timezone="America/New_York", municipality_id=5, tariff_id=10),
        ],
    )
    ref.push(stubs, token, "devices", [ref.device(1, 1), ref.device(2, 1), ref.device(3, 2)])


def _push_readings(
    stubs: Stubs, token: str, rows: list[tuple[int, str, datetime, float]], first: int = 1
) -> Any:
    batches = [
        request(first + i, [reading(d, t, v, metric=m) for d, m, t, v in rows[b : b + 500]])
        for i, b in enumerate(range(0, len(rows), 500))
    ]
    return push(stubs, token, batches)


RANGES = (
    (T0, T0 + timedelta(days=DAYS + 1)),
    (T0 + timedelta(days=1, minutes=7), T0 + timedelta(days=19, hours=5, minutes=13, seconds=5)),
    (T0 + timedelta(days=5, minutes=10), T0 + timedelta(days=5, minutes=20)),
    (T0 + timedelta(days=11, hours=22, minutes=59), T0 + timedelta(days=13, hours=0, minutes=31)),
)


def _everything(stubs: Stubs, token: str, db: Database, code: str, customer_id: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for r, (start, end) in enumerate(RANGES):
        for metric in (*METRICS, "nope"):
            for bucket in Bucket:
                out[f"points {r} {metric} {bucket}"] = answers.wire_points(
                    stubs, token, code, metric, start, end, bucket
                )
            out[f"summary {r} {metric}"] = answers.summary(stubs, token, metric, start, end)
        out[f"costs {r}"] = answers.costs(stubs, token, code, start, end)
    start, end = RANGES[3]
    for bucket in Bucket:
        for devices in ((), (2, 3)):
            query = MeasurementQuery(customer_id, "energy_kwh", start, end, bucket, devices)
            whole = answers.chunked_points(db, query, 1_000_000)
            for limit in (7, 250):
                assert answers.chunked_points(db, query, limit) == whole, (bucket, devices, limit)
            out[f"store {bucket} {devices}"] = whole
    out["detail"] = answers.detail(stubs, token, code)
    out["newest"] = answers.newest_readings(stubs, token, code)
    return out


def _compare(before: dict[str, Any], after: dict[str, Any]) -> None:
    assert before.keys() == after.keys()
    for key in before:
        assert after[key] == before[key], key


def _units(db: Database, customer_id: int) -> int:
    with db.engine.connect() as conn:
        return int(
            conn.scalar(
                text("SELECT count(*) FROM fleet.measurements_compressed WHERE customer_id = :c"),
                {"c": customer_id},
            )
            or 0
        )


def test_every_answer_is_the_same_before_and_after_compression(db, stubs, new_customer, admin_token):
    customer = new_customer("ACME")
    new_customer("OTHER")  # a customer without readings is in the fleet summary too
    _push_reference(stubs, customer.token)
    _push_readings(stubs, customer.token, _readings())
    before = _everything(stubs, admin_token, db, customer.code, customer.id)
    assert before[f"points 0 nope {Bucket.RAW}"].startswith("StatusCode.NOT_FOUND")

    report = compress(db, T0 + timedelta(days=12, hours=5), _ZERO, customer_id=customer.id)
    assert report.units > 0
    assert report.skipped == report.failed == 0
    _compare(before, _everything(stubs, admin_token, db, customer.code, customer.id))

    # Late readings into compressed days (new keys, mid-hour and in hours of their own), and a
    # re-push of compressed readings (duplicates): in their hour at once, the same after the fold.
    late = [
        (1, "energy_kwh", T0 + timedelta(days=3, minutes=7), 0.5),
        (1, "energy_kwh", T0 + timedelta(days=3, minutes=8), -0.0),
        (2, "power_w", T0 + timedelta(days=4, hours=2, minutes=1), 5e-324),
        (3, "energy_kwh", T0 + timedelta(days=11, hours=23, minutes=50), -1e15),
    ]
    acks = _push_readings(stubs, customer.token, late + _readings()[:40], first=1000)
    assert sum(a.accepted for a in acks) == len(late)
    assert sum(a.duplicates for a in acks) == 40
    mixed = _everything(stubs, admin_token, db, customer.code, customer.id)
    assert mixed != before

    report = compress(db, T0 + timedelta(days=DAYS + 5), _ZERO, customer_id=customer.id)
    assert report.units > 0
    assert report.skipped == report.failed == 0
    _compare(mixed, _everything(stubs, admin_token, db, customer.code, customer.id))


def test_chunks_split_anywhere_in_mixed_hot_and_compressed_data(db, stubs, new_customer):
    customer = new_customer("ACME")
    rows = [r for r in _readings() if r[0] != 4 and r[1] == "power_w"]
    _push_readings(stubs, customer.token, rows)
    compress(db, T0 + timedelta(days=10), _ZERO, customer_id=customer.id)
    # Late readings make hours that are both compressed and hot.
    _push_readings(
        stubs,
        customer.token,
        [
            (d, "power_w", T0 + timedelta(days=2, minutes=15 * k + 1), 0.1 * k)
            for d in (1, 3)
            for k in range(9)
        ],
        first=500,
    )
    windows = {
        Bucket.RAW: [
            (timedelta(days=2), timedelta(days=2, hours=6)),
            (timedelta(days=9, hours=22), timedelta(days=10, hours=2)),
        ],
        Bucket.HOUR: [
            (timedelta(days=1, hours=20), timedelta(days=2, hours=12)),
            (timedelta(days=9, hours=12), timedelta(days=10, hours=8)),
        ],
        Bucket.DAY: [(timedelta(days=1), timedelta(days=13))],
    }
    for bucket, spans in windows.items():
        for low, high in spans:
            query = MeasurementQuery(customer.id, "power_w", T0 + low, T0 + high, bucket)
            whole = read_chunk(db, query, None, 10_000_000)
            assert [p[:2] for p in whole] == sorted({p[:2] for p in whole})  # ordered, each key once
            assert len(whole) > 25
            for limit in (1, 2, 3, 23, 24, 25, 97):
                assert answers.chunked_points(db, query, limit) == answers.point_bits(whole), (bucket, limit)


def test_a_customer_whose_readings_are_all_compressed_keeps_its_metrics_and_newest_readings(
    db, stubs, new_customer, admin_token
):
    customer = new_customer("ACME")
    rows = [(1, "power_w", T0 + timedelta(hours=h, seconds=17), 1.0) for h in range(30)]
    rows += [(2, "energy_kwh", T0 + timedelta(days=2, minutes=m, microseconds=3), 2.0) for m in range(5)]
    _push_readings(stubs, customer.token, rows)
    compress(db, T0 + timedelta(days=40), _ZERO, customer_id=customer.id)
    assert _units(db, customer.id) == 2

    def catalog(session: Any) -> tuple[bool, bool, list[str], dict[tuple[int, int], datetime]]:
        return (
            metric_catalog.has_metric(session, customer.id, "power_w"),
            metric_catalog.has_metric(session, customer.id, "power"),
            metric_catalog.metrics_of(session, customer.id),
            device_activity.newest_readings(session, [customer.id]),
        )

    has_power, has_typo, known, newest = db.transaction(catalog)
    assert (has_power, has_typo, known) == (True, False, ["energy_kwh", "power_w"])
    assert newest == {
        (customer.id, 1): T0 + timedelta(hours=29, seconds=17),
        (customer.id, 2): T0 + timedelta(days=2, minutes=4, microseconds=3),
    }
    refused = answers.wire_points(stubs, admin_token, "ACME", "power", T0, T0 + timedelta(days=1), Bucket.RAW)
    assert isinstance(refused, str)
    assert "did you mean power_w" in refused

    # A late reading, newer than the unit's last: the newest is the hot one now.
    _push_readings(stubs, customer.token, [(1, "power_w", T0 + timedelta(hours=29, minutes=1), 3.0)], first=9)
    newest = db.transaction(lambda s: device_activity.newest_readings(s, [customer.id]))
    assert newest[(customer.id, 1)] == T0 + timedelta(hours=29, minutes=1)


@pytest.mark.parametrize("bucket", list(Bucket))
def test_a_query_of_hot_days_after_compressed_ones_gets_just_those(db, stubs, new_customer, bucket):
    customer = new_customer("ACME")
    rows = [(1, "power_w", T0 + timedelta(hours=h), float(h)) for h in range(24 * 40)]
    _push_readings(stubs, customer.token, rows)
    compress(db, T0 + timedelta(days=30), _ZERO, customer_id=customer.id)
    query = MeasurementQuery(customer.id, "power_w", T0 + timedelta(days=35), T0 + timedelta(days=36), bucket)
    points = read_chunk(db, query, None, 5000)
    assert len(points) == {Bucket.RAW: 24, Bucket.HOUR: 24, Bucket.DAY: 1}[bucket]
