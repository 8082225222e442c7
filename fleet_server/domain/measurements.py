"""Measurement batches: the rules every row must pass, checked over whole columns at once.

A batch arrives as columns of plain Python values (`store.measurements.MeasurementBatch`), never
as one object per row. Validation runs over whole columns at C speed (`min`, `max`, `set`,
`sum`) and only walks row by row to name the offending rows once something is wrong.
"""

from __future__ import annotations

import math
import re
import threading
from datetime import datetime

from fleet_server.domain.rules import EARLIEST_TIME, MAX_FUTURE, check_time
from fleet_server.errors import MAX_LISTED_VIOLATIONS, FieldViolation, InvalidArgument, Violations
from fleet_server.store.measurements import MeasurementBatch
from fleet_server.store.timestamps import from_pg_micros, to_pg_micros

METRIC_PATTERN = re.compile(r"[a-z][a-z0-9_]{0,62}")
# The largest magnitude a reading may have. Chosen so that no sum the server keeps or computes
# can overflow, whoever sent the rows: an hour of one device's metric holds at most 3.6e9
# readings (one per microsecond), so its rollup sum stays below 4e24; the whole table holds
# fewer than 2**63 rows, so a fleet summary stays below 1e34, far inside a double (1.8e308); and
# a bill's kWh (NUMERIC, 6 places) stays below 35 integer digits, which with a rate of at most
# 15 + 10 digits fits the cost arithmetic's 60 significant digits exactly. No meter reads 1e15 of
# anything (a petawatt-hour); one customer's `1e308` made every fleet summary fail.
MAX_VALUE_MAGNITUDE = 1e15
VALUE_RANGE = "must be finite and within ±1e15"

FIELD_DEVICE_ID = "device_id"
FIELD_METRIC = "metric"
FIELD_TIME = "time"
FIELD_VALUE = "value"
FIELD_RECEIVED_AT = "received_at"


class _MetricNames:
    """Metric names already proven valid; a batch nearly always repeats the same few."""

    LIMIT = 4096

    def __init__(self) -> None:
        self._good: set[str] = set()
        self._lock = threading.Lock()

    def all_valid(self, names: set[str]) -> bool:
        unknown = names - self._good
        if not unknown:
            return True
        if not all(METRIC_PATTERN.fullmatch(n) for n in unknown):
            return False
        with self._lock:
            if len(self._good) > self.LIMIT:
                self._good.clear()
            self._good |= unknown
        return True


_METRIC_NAMES = _MetricNames()


def validate_batch(batch: MeasurementBatch, now: datetime, path: str = "measurements") -> None:
    """Raise InvalidArgument naming row and field (`measurements[17].value`) if any row is bad.

    Whole columns are checked first with C-speed builtins; the row-by-row walk that names the
    rows only runs when a column has a problem.
    """
    if not len(batch):
        return
    latest = to_pg_micros(now + MAX_FUTURE)
    earliest = to_pg_micros(EARLIEST_TIME)
    devices_ok = min(batch.device_ids) > 0
    metrics_ok = _METRIC_NAMES.all_valid(set(batch.metrics))
    # A NaN or an infinity makes the sum non-finite (min and max cannot see a NaN); within the
    # bound, the sum of a batch cannot overflow.
    values_ok = (
        math.isfinite(sum(batch.values))
        and min(batch.values) >= -MAX_VALUE_MAGNITUDE
        and max(batch.values) <= MAX_VALUE_MAGNITUDE
    )
    times_ok = min(batch.times) >= earliest and max(batch.times) <= latest
    received_ok = min(batch.received) >= earliest and max(batch.received) <= latest
    if devices_ok and metrics_ok and values_ok and times_ok and received_ok:
        return
    _raise_violations(batch, now, path, earliest, latest)


def _raise_violations(batch: MeasurementBatch, now: datetime, path: str, earliest: int, latest: int) -> None:
    found: list[FieldViolation] = []
    total = 0
    for i in range(len(batch)):
        row = f"{path}[{i}]"
        problems: list[FieldViolation] = []
        if batch.device_ids[i] <= 0:
            problems.append(FieldViolation(f"{row}.{FIELD_DEVICE_ID}", "must be positive"))
        if not METRIC_PATTERN.fullmatch(batch.metrics[i]):
            problems.append(FieldViolation(f"{row}.{FIELD_METRIC}", "must match [a-z][a-z0-9_]{0,62}"))
        for name, column in ((FIELD_TIME, batch.times), (FIELD_RECEIVED_AT, batch.received)):
            if not earliest <= column[i] <= latest:
                problems.extend(_time_violation(batch, i, name, column[i], now, f"{row}.{name}"))
        if not abs(batch.values[i]) <= MAX_VALUE_MAGNITUDE:  # NaN fails this too
            problems.append(FieldViolation(f"{row}.{FIELD_VALUE}", VALUE_RANGE))
        total += len(problems)
        found.extend(problems[: MAX_LISTED_VIOLATIONS - len(found)])  # only these are listed
    if total == 0:  # every column check is exact, so this is only a guard against a refusal naming nothing
        return
    raise InvalidArgument(found, total=total)


def _time_violation(
    batch: MeasurementBatch, index: int, name: str, micros: int, now: datetime, path: str
) -> list[FieldViolation]:
    problems = Violations()
    unset = batch.is_unset is not None and batch.is_unset(index, name)
    check_time(None if unset else from_pg_micros(micros), path, problems, now=now)
    return problems.items
