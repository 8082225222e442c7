"""Property: compressing never changes an answer, bit for bit (issue 14, point 3).

Random readings around a DST change of the sites' zones (Europe/Berlin, America/New_York,
Australia/Lord_Howe and its half-hour shift), with random gaps, several devices and metrics,
values of every magnitude the bound allows (±1e15, subnormals, -0.0, 0.0), duplicates inside and
across batches and re-pushed whole, are pushed over the wire in random splits. Every query —
raw, hour and day points over the whole span and over a range with partial edges (also read a
few points at a time), SummarizeFleet, ComputeCosts under a time-of-use tariff, the detail view,
fleet health's newest readings — is answered; then a random cutoff compresses part or all of
the days, and every answer must be the same bits. Then late readings (new keys and re-pushes)
land in compressed days, the answers are taken again, the next run folds them in, and again
nothing may change; the raw points must be exactly the first write of every key.

Derandomized (a fixed sequence of examples), so it cannot flake; `COLD_PROPERTY_EXAMPLES` runs
more of them (default 20: a minute or two).
"""

from __future__ import annotations

import itertools
import os
import random
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fleet_server.db.session import Database
from fleet_server.domain.compression import compress
from fleet_server.store.cold_reads import unix_us
from fleet_server.store.measurement_reads import Bucket, MeasurementQuery
from tests.support import cold_answers as answers
from tests.support import reference_data as ref
from tests.support.clients import Stubs
from tests.support.measurements import first_wins, push, reading, request

Row = tuple[int, str, datetime, float]
METRICS = ("energy_kwh", "power_w")
ZONES = ("Europe/Berlin", "America/New_York", "Australia/Lord_Howe")
# Days (UTC) on which one of the zones changes its clocks in 2024.
DST_DAYS = (
    datetime(2024, 3, 10, tzinfo=UTC),  # New York forward
    datetime(2024, 3, 31, tzinfo=UTC),  # Berlin forward, and the month turns
    datetime(2024, 4, 6, tzinfo=UTC),  # Lord Howe back half an hour (local 7 April)
    datetime(2024, 10, 5, tzinfo=UTC),  # Lord Howe forward half an hour (local 6 October)
    datetime(2024, 10, 27, tzinfo=UTC),  # Berlin back
    datetime(2024, 11, 3, tzinfo=UTC),  # New York back
)
SPAN_DAYS = 4
SPAN_MINUTES = SPAN_DAYS * 24 * 60
EXAMPLES = int(os.environ.get("COLD_PROPERTY_EXAMPLES") or 20)
_codes = itertools.count(1)

values = st.one_of(
    st.sampled_from([0.0, -0.0, 5e-324, -5e-324, 2.2250738585072014e-308, 1e15, -1e15, 1e-300, 0.1, 1 / 3]),
    st.sampled_from([5e-7, -2.5e-6, 1.2345675]),  # 6-place ties: priced from their text, hot or cold
    st.floats(min_value=-1e15, max_value=1e15, allow_nan=False, allow_infinity=False),
    st.integers(-4000, 4000).map(lambda v: v / 1000),
)


@st.composite
def readings(draw: st.DrawFn, base: datetime, minutes: int) -> list[Row]:
    """Readings at a few random moments (so keys repeat: duplicates with other values)."""
    moments = draw(st.lists(st.integers(0, minutes - 1), min_size=1, max_size=25))
    offsets = st.tuples(
        st.sampled_from(moments), st.sampled_from([0, 1, 59]), st.sampled_from([0, 1, 999_999])
    )
    rows = draw(
        st.lists(
            st.tuples(st.integers(1, 4), st.sampled_from(METRICS), offsets, values),
            min_size=1,
            max_size=60,
        )
    )
    return [
        (device, metric, base + timedelta(minutes=m, seconds=s, microseconds=us), value)
        for device, metric, (m, s, us), value in rows
    ]


_MAGNITUDES = (1e-300, 1e-6, 1e-3, 1.0, 1e3, 1e9, 1e15)


@st.composite
def series(draw: st.DrawFn, base: datetime) -> list[Row]:
    """A regular series of one device and metric with random gaps: hours of many readings, days
    of many hours. Values from a drawn seed, of a drawn magnitude, some negative, some zeros."""
    device, metric = draw(st.integers(1, 4)), draw(st.sampled_from(METRICS))
    step = draw(st.sampled_from([5, 15, 60]))
    rand = random.Random(draw(st.integers(0, 2**32)))
    scale = draw(st.sampled_from(_MAGNITUDES))
    missing = draw(st.sampled_from([0.0, 0.01, 0.3]))
    rows = []
    for minute in range(0, SPAN_MINUTES, step):
        if rand.random() < missing:
            continue
        if rand.random() < 0.05:
            value = rand.choice([0.0, -0.0])
        elif scale >= 1:
            value = round(rand.uniform(-1, 1) * scale, 3)  # as meters report: rounded
        else:
            value = rand.uniform(-1, 1) * scale  # full precision, tiny
        jitter = timedelta(minutes=minute, seconds=rand.choice([0, 0, 1, 2]))
        rows.append((device, metric, base + jitter, value))
    return rows


@st.composite
def cases(draw: st.DrawFn) -> dict[str, Any]:
    base = draw(st.sampled_from(DST_DAYS)) - timedelta(days=1)
    rows = draw(readings(base, SPAN_MINUTES))
    for _ in range(draw(st.integers(0, 2))):
        rows += draw(series(base))
    rows = draw(st.permutations(rows)) if len(rows) < 200 else rows
    repushed = draw(st.lists(st.sampled_from(rows), max_size=10))  # duplicates pushed again
    cut_minutes = draw(st.integers(24 * 60, SPAN_MINUTES + 24 * 60))
    cutoff = base + timedelta(minutes=cut_minutes)
    settled = (cutoff - base) // timedelta(days=1) * 24 * 60  # minutes of whole settled days
    late = draw(readings(base, settled)) if draw(st.booleans()) else []
    late += draw(st.lists(st.sampled_from(rows), max_size=5))
    low = draw(st.integers(0, SPAN_MINUTES - 2))
    high = draw(st.integers(low + 1, SPAN_MINUTES))
    return {
        "base": base,
        "zones": (draw(st.sampled_from(ZONES)), draw(st.sampled_from(ZONES))),
        "batches": _split(draw, rows + repushed),
        "late": _split(draw, late),
        "cutoff": cutoff,
        "ranges": [
            (base - timedelta(hours=1), base + timedelta(days=SPAN_DAYS + 1)),
            (base + timedelta(minutes=low, seconds=30), base + timedelta(minutes=high, microseconds=7)),
        ],
    }


def _split(draw: st.DrawFn, rows: list[Row]) -> list[list[Row]]:
    cuts = sorted(draw(st.lists(st.integers(1, max(1, len(rows) - 1)), max_size=3)))
    bounds = [0, *cuts, len(rows)]
    return [rows[a:b] for a, b in itertools.pairwise(bounds) if b > a]


def _push(stubs: Stubs, token: str, batches: list[list[Row]]) -> None:
    requests = [
        request(i + 1, [reading(d, t, v, metric=m) for d, m, t, v in rows]) for i, rows in enumerate(batches)
    ]
    push(stubs, token, requests)


def _reference(stubs: Stubs, token: str, zones: tuple[str, str]) -> None:
    ref.push(stubs, token, "municipalities", [ref.municipality(5)])
    tou = ref.reference_tariff(effective_from=ref.ts(datetime(2020, 1, 1, tzinfo=UTC)))
    ref.push(stubs, token, "tariffs", [tou])
    sites = [ref.site(s, timezone=zones[s - 1], municipality_id=5, tariff_id=10) for s in (1, 2)]
    ref.push(stubs, token, "sites", sites)
    ref.push(stubs, token, "devices", [ref.device(1, 1), ref.device(2, 1), ref.device(3, 2)])  # 4: no site


def _answers(
    stubs: Stubs, token: str, db: Database, code: str, customer_id: int, case: dict[str, Any]
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for r, (start, end) in enumerate(case["ranges"]):
        for metric in METRICS:
            for bucket in Bucket:
                out[f"points {r} {metric} {bucket}"] = answers.wire_points(
                    stubs, token, code, metric, start, end, bucket
                )
            out[f"summary {r} {metric}"] = answers.summary(stubs, token, metric, start, end)
        out[f"costs {r}"] = answers.costs(stubs, token, code, start, end)
    start, end = case["ranges"][1]
    for bucket in Bucket:
        query = MeasurementQuery(customer_id, "power_w", start, end, bucket)
        out[f"chunks of 5 {bucket}"] = answers.chunked_points(db, query, 5)
    out["detail"] = answers.detail(stubs, token, code)
    out["newest"] = answers.newest_readings(stubs, token, code)
    return out


def _same(before: dict[str, Any], after: dict[str, Any]) -> None:
    assert before.keys() == after.keys()
    for key in before:
        assert after[key] == before[key], key


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
@given(case=cases())
def test_compression_changes_no_answer(db, stubs, new_customer, admin_token, case):
    customer = new_customer(f"COLD{next(_codes)}")
    _reference(stubs, customer.token, case["zones"])
    _push(stubs, customer.token, case["batches"])
    before = _answers(stubs, admin_token, db, customer.code, customer.id, case)

    report = compress(db, case["cutoff"], timedelta(0), customer_id=customer.id)
    assert report.skipped == report.failed == 0
    mixed = _answers(stubs, admin_token, db, customer.code, customer.id, case)
    _same(before, mixed)

    if case["late"]:
        _push(stubs, customer.token, case["late"])
        mixed = _answers(stubs, admin_token, db, customer.code, customer.id, case)
    report = compress(db, case["cutoff"], timedelta(0), customer_id=customer.id)
    assert report.skipped == report.failed == 0
    _same(mixed, _answers(stubs, admin_token, db, customer.code, customer.id, case))

    # And the raw points are exactly the first write of every key, wherever it lives.
    kept = first_wins(row for batches in (case["batches"], case["late"]) for rows in batches for row in rows)
    for metric in METRICS:
        mine = sorted((d, unix_us(t), v) for (d, m, t), v in kept.items() if m == metric)
        raw = mixed[f"points 0 {metric} {Bucket.RAW}"]
        if not mine:
            assert isinstance(raw, str)
            assert "NOT_FOUND" in raw
            continue
        assert raw == [(d, t, 1, answers.bits(v), answers.bits(v), answers.bits(v)) for d, t, v in mine]
