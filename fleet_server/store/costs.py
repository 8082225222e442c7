"""Pricing reads across customers: every reading of a range grouped into billing slots, in one statement.

The database groups the raw `energy_kwh` readings of the range into slots — (customer, site,
priced or not, period) — with the period chosen in SQL from each reading's local weekday and
time of day (`time AT TIME ZONE site.timezone`, DST-correct). The domain then does the exact
decimal arithmetic over that small result (`domain.costs`, `domain.tou`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

import numpy as np
import psycopg
from sqlalchemy import bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session
from sqlalchemy.types import BigInteger, Text

from fleet_server.store import cold_reads
from fleet_server.store.cold_codec import Bools, Float64s, Int64s

ENERGY_METRIC = "energy_kwh"
_INVALID_PARAMETER_VALUE = "22023"  # SQLSTATE raised by AT TIME ZONE for a zone it does not know


class UnconvertibleTimezones(Exception):
    """PostgreSQL's timezone data lacks some sites' zones: (code, site id, timezone) of each."""

    def __init__(self, sites: list[tuple[str, int, str]]) -> None:
        super().__init__(f"{len(sites)} sites in unknown timezones")
        self.sites = sites


@dataclass(frozen=True)
class EnergySlot:
    """Readings of one site grouped by what they are billed under."""

    customer_id: int
    site_id: int | None
    priced: bool
    period_id: int | None  # None = default rate (when priced)
    kwh: Decimal
    readings: int


# The whole pricing match in one pass over the range's partitions. Readings are first grouped by
# site and local minute of the week — at most 7 * 1440 groups per site whatever the number of
# readings — and only then is the period looked up, lowest id first, once per group. A wrapping
# period (end before start) covers both ends of each listed day itself, and an end of 23:59 means
# the end of the day. Each reading is converted to 6-place kWh before summing, from the double's
# shortest round-trip text (float8 -> text -> numeric, rounded half away from zero): that is the
# decimal the portal meant; rounding the exact binary expansion would let binary noise decide
# ties, and the direct float8 -> numeric cast keeps only 15 significant digits. `OFFSET 0` keeps
# `readings` a separate subquery so each reading's local time is computed once, not once per
# expression that uses it (that alone halves the query's time). Readings of compressed days are
# decoded here and join the hot rows as arrays (`cold_*`): the same readings, priced the same.
# Their 6-place kWh is mostly computed while decoding, in millionths (`micro_kwh`): the text
# round trip is a third of the query's time per reading. A reading whose millionths numpy cannot
# prove comes as a value (`odd_*`) and is rounded here like a hot one. A slot's kWh is the exact
# sum of both kinds, scale 6 as before.
_AGGREGATE = text(
    """
    WITH billing AS MATERIALIZED (
        SELECT d.customer_id, d.id AS device_id, d.site_id, s.tariff_id,
               coalesce(nullif(s.timezone, ''), 'UTC') AS zone,
               t.is_active, t.effective_from, t.effective_to
        FROM fleet.devices AS d
        LEFT JOIN fleet.sites AS s ON s.customer_id = d.customer_id AND s.id = d.site_id
        LEFT JOIN fleet.tariffs AS t ON t.customer_id = s.customer_id AND t.id = s.tariff_id
        WHERE d.customer_id = ANY(:customer_ids)
    ),
    readings AS (
        SELECT m.customer_id,
               d.site_id,
               d.tariff_id,
               coalesce(d.is_active
                        AND m.time >= d.effective_from
                        AND (d.effective_to IS NULL OR m.time < d.effective_to), false) AS priced,
               m.time AT TIME ZONE coalesce(d.zone, 'UTC') AS local_time,
               CASE WHEN m.micro IS NULL THEN round(m.value::text::numeric, 6) END AS kwh,
               m.micro
        FROM (
            SELECT customer_id, device_id, time, value, NULL::bigint AS micro
            FROM fleet.measurements
            WHERE customer_id = ANY(:customer_ids)
              AND metric = :metric
              AND time >= :start AND time < :end
            UNION ALL
            SELECT customer_id, device_id, time, NULL::float8, micro
            FROM unnest(:cold_customers, :cold_devices, :cold_times, :cold_micros)
                AS cold(customer_id, device_id, time, micro)
            UNION ALL
            SELECT customer_id, device_id, time, value, NULL::bigint
            FROM unnest(:odd_customers, :odd_devices, :odd_times, :odd_values)
                AS odd(customer_id, device_id, time, value)
        ) AS m
        LEFT JOIN billing AS d ON d.customer_id = m.customer_id AND d.device_id = m.device_id
        OFFSET 0
    ),
    slots AS (
        SELECT customer_id, site_id, tariff_id, priced,
               CASE WHEN priced
                    THEN (date_part('isodow', local_time)::int - 1) * 1440
                         + date_part('hour', local_time)::int * 60
                         + date_part('minute', local_time)::int
               END AS minute_of_week,
               sum(kwh) AS kwh,
               sum(micro) AS micro,
               count(*) AS readings
        FROM readings
        GROUP BY customer_id, site_id, tariff_id, priced, minute_of_week
    )
    SELECT sl.customer_id, sl.site_id, sl.priced, p.id AS period_id,
           coalesce(sum(sl.kwh), 0) + coalesce(sum(sl.micro), 0) * 0.000001 AS kwh,
           sum(sl.readings)::bigint AS readings
    FROM slots AS sl
    LEFT JOIN LATERAL (
        SELECT tp.id
        FROM fleet.tariff_periods AS tp
        CROSS JOIN LATERAL (
            SELECT sl.minute_of_week / 1440 AS weekday,
                   sl.minute_of_week % 1440 AS minute,
                   CASE WHEN tp.end_minute = 1439 THEN 1440 ELSE tp.end_minute END AS end_minute
        ) AS slot
        WHERE sl.priced
          AND tp.customer_id = sl.customer_id
          AND tp.tariff_id = sl.tariff_id
          AND (tp.days_of_week & (1 << slot.weekday)) <> 0
          AND CASE WHEN slot.end_minute > tp.start_minute
                   THEN slot.minute >= tp.start_minute AND slot.minute < slot.end_minute
                   ELSE slot.minute >= tp.start_minute OR slot.minute < slot.end_minute
              END
        ORDER BY tp.id
        LIMIT 1
    ) AS p ON true
    GROUP BY sl.customer_id, sl.site_id, sl.priced, p.id
    """
).bindparams(bindparam("customer_ids", type_=ARRAY(BigInteger)), bindparam("metric", type_=Text))


def energy_slots(
    session: Session, customer_ids: list[int], start: datetime, end: datetime, timeout_s: float | None = None
) -> list[EnergySlot]:
    """The `energy_kwh` readings of `[start, end)` of the customers, grouped into billing slots.

    `timeout_s` replaces the session's statement timeout for this query (it reads every reading
    of a range of up to `max_cost_span_days`); None keeps it. Raises `UnconvertibleTimezones`
    when PostgreSQL cannot convert to a site's timezone.
    """
    if not customer_ids:
        return []
    # float8 -> text must be the shortest round-trip form whatever the server's default. JIT is
    # off because the planner cannot foresee how far the grouping shrinks the rows and compiles
    # for the raw row count: ~0.9 s of compiling for a ~0.3 s query. The hash aggregate over the
    # raw readings gets memory enough not to spill. Nested loops are off: a partition being
    # filled has no statistics yet (a back-fill's month: the planner expects 1 reading), and the
    # nested loop it then picks looks up every reading's device, site and tariff by index —
    # 200,000 buffer visits for a week of 50 meters, two thirds of the query's time (make load);
    # hash joins against the few reference rows cost 8,000. The reference rows are joined first,
    # once (`billing`: a device's site, tariff and zone), so each reading is one hash probe: the
    # same estimate made the planner hash the readings instead, once per joined table (three
    # 33,600-row hash tables for a week of 50 meters, 40 % of the statement's time). The
    # tariff-period LATERAL stays a loop (it can only be one), over the few thousand groups.
    # Sorts are off: the planner expects a hash aggregate of numeric sums to need more memory
    # than it does and sorts every reading instead (measured: 142,000 readings, 900 ms with the
    # sort, 620 ms hashed, rows or compressed alike); the result is a few thousand groups. All in
    # one round trip: under load every statement waits for a CPU, and five of them cost as much
    # as the query.
    settings = {
        "extra_float_digits": "1",
        "jit": "off",
        "work_mem": "64MB",
        "enable_nestloop": "off",
        "enable_sort": "off",
    }
    if timeout_s is not None:
        settings["statement_timeout"] = str(max(0, math.ceil(timeout_s * 1000)))
    session.execute(
        text("SELECT " + ", ".join(f"set_config('{name}', :{name}, true)" for name in settings)), settings
    )
    params = {
        "customer_ids": customer_ids,
        "metric": ENERGY_METRIC,
        "start": start,
        "end": end,
        **_compressed_readings(session, customer_ids, start, end),
    }
    try:
        with session.begin_nested():
            rows = session.execute(_AGGREGATE, params).all()
    except DBAPIError as exc:
        if getattr(exc.orig, "sqlstate", None) == _INVALID_PARAMETER_VALUE:
            unknown = database_unknown_timezones(session, customer_ids)
            if unknown:
                raise UnconvertibleTimezones(unknown) from exc
        raise
    return [
        EnergySlot(
            customer_id=row.customer_id,
            site_id=row.site_id,
            priced=row.priced,
            period_id=row.period_id,
            kwh=row.kwh,
            readings=row.readings,
        )
        for row in rows
    ]


def _compressed_readings(
    session: Session, customer_ids: list[int], start: datetime, end: datetime
) -> dict[str, cold_reads.IntArray | cold_reads.TimeArray | cold_reads.FloatArray]:
    """The customers' compressed `energy_kwh` readings of `[start, end)` as array parameters:
    `cold_*` with their kWh in millionths, `odd_*` (the few numpy cannot round) with their value."""
    driver = session.connection().connection.driver_connection
    assert isinstance(driver, psycopg.Connection)
    cold_reads.register_arrays(driver)
    with driver.cursor(binary=True) as cursor:
        units = cold_reads.fleet_units(cursor, ENERGY_METRIC, start, end, customer_ids, hours=False)
        readings = cold_reads.fleet_readings(units, [(cold_reads.unix_us(start), cold_reads.unix_us(end))])
    micros, proven = micro_kwh(readings.values)
    odd = ~proven
    return {
        "cold_customers": cold_reads.IntArray(readings.customers[proven]),
        "cold_devices": cold_reads.IntArray(readings.devices[proven]),
        "cold_times": cold_reads.TimeArray(readings.times[proven]),
        "cold_micros": cold_reads.IntArray(micros[proven]),
        "odd_customers": cold_reads.IntArray(readings.customers[odd]),
        "odd_devices": cold_reads.IntArray(readings.devices[odd]),
        "odd_times": cold_reads.TimeArray(readings.times[odd]),
        "odd_values": cold_reads.FloatArray(readings.values[odd]),
    }


# Below this a product value x 10^6 is a double with at least 3 bits after the point.
_MICRO_LIMIT = 2.0**49
# How far (in units in the last place of the product) from a tie the product must be.
_TIE_MARGIN_ULPS = 4.0


def micro_kwh(values: Float64s) -> tuple[Int64s, Bools]:
    """Each value's kWh rounded to 6 places, in millionths, and where that is proven.

    The rule is SQL's `round(value::text::numeric, 6)`: the double's shortest round-trip decimal
    `s`, rounded half away from zero. `y = fl(value * 10^6)` lies within about 1.5 ulp(y) of
    `s * 10^6` (half an ulp of the value scaled, half an ulp of the product). So where `y` is
    finite, below 2^49 and more than 4 ulp(y) from a tie (k + 1/2), `s * 10^6` is on the same
    side of that tie and is no tie itself, and the nearest integer to `y` is the answer. The
    other values (ties or near ones, huge magnitudes, which numpy would need the decimal for)
    are marked unproven and priced by SQL itself.
    """
    with np.errstate(over="ignore", invalid="ignore"):
        scaled = np.abs(values * 1e6)
        fraction = scaled - np.floor(scaled)
        proven = (scaled < _MICRO_LIMIT) & (np.abs(fraction - 0.5) > _TIE_MARGIN_ULPS * np.spacing(scaled))
    micros = np.where(proven, np.copysign(np.rint(np.where(proven, scaled, 0.0)), values), 0.0)
    return micros.astype(np.int64), proven


def database_unknown_timezones(session: Session, customer_ids: list[int]) -> list[tuple[str, int, str]]:
    """(code, site id, timezone) of the sites whose timezone PostgreSQL cannot convert to.

    Each distinct zone is tried for real (`AT TIME ZONE`) in its own savepoint: the catalogue view
    `pg_timezone_names` omits some zones that conversions accept (`right/UTC`).
    """
    rows = session.execute(
        text(
            """
            SELECT c.code, s.id, s.timezone
            FROM fleet.sites AS s JOIN fleet.customers AS c ON c.id = s.customer_id
            WHERE s.customer_id = ANY(:customer_ids) AND s.timezone <> ''
            ORDER BY c.code, s.id
            """
        ).bindparams(bindparam("customer_ids", type_=ARRAY(BigInteger))),
        {"customer_ids": customer_ids},
    ).all()
    rejected: set[str] = set()
    for zone in sorted({row.timezone for row in rows}):
        try:
            with session.begin_nested():
                session.execute(text("SELECT now() AT TIME ZONE :zone"), {"zone": zone})
        except DBAPIError:
            rejected.add(zone)
    return [(row.code, row.id, row.timezone) for row in rows if row.timezone in rejected]
