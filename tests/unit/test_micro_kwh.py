"""`store.costs.micro_kwh`: compressed readings' 6-place kWh, computed while decoding, must be the
very decimal SQL's `round(value::text::numeric, 6)` gives the same reading when it is hot."""

from __future__ import annotations

import math
from decimal import ROUND_HALF_UP, Decimal

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from fleet_server.store.costs import micro_kwh

_PLACE = Decimal("0.000001")


def _rule(value: float) -> int:
    """The rule, spelled out: the shortest round-trip decimal, rounded half away from zero."""
    return int(Decimal(repr(value)).quantize(_PLACE, rounding=ROUND_HALF_UP) * 1_000_000)


def _check(values: list[float]) -> np.ndarray:
    micros, proven = micro_kwh(np.array(values, dtype=np.float64))
    for value, micro, ok in zip(values, micros.tolist(), proven.tolist(), strict=True):
        if ok:
            assert micro == _rule(value), value
    return proven


@settings(max_examples=3000, deadline=None)
@given(st.lists(st.floats(allow_nan=True, allow_infinity=True), max_size=50))
def test_every_proven_value_follows_the_rule(values: list[float]) -> None:
    _check(values)


@settings(max_examples=1000, deadline=None)
@given(st.integers(-(10**15), 10**15), st.integers(0, 6))
def test_short_decimals_are_proven_and_exact(digits: int, places: int) -> None:
    """Meter readings: a few decimals. All of them are proven, so none is left to SQL."""
    value = float(Decimal(digits).scaleb(-places))
    if abs(value) >= 1e8:
        return  # a kWh reading of 10^8 with six places is past what the float product can prove
    assert _check([value]).all(), value


def test_ties_and_near_ties_are_left_to_sql_or_right() -> None:
    ties = [5e-7, -5e-7, 1.0000005, 2.5e-6, 0.0000015, 123.4567885, -0.0000025, 1e-7 * 5]
    near = [math.nextafter(v, math.inf) for v in ties] + [math.nextafter(v, -math.inf) for v in ties]
    proven = _check(ties + near)
    assert not proven[: len(ties)].any(), "an exact decimal tie cannot be proven from the float"


def test_what_numpy_cannot_hold_is_left_to_sql() -> None:
    values = [math.nan, math.inf, -math.inf, 1e300, -1e12, 2.0**49 / 1e6 * 2]
    assert not _check(values).any()
    assert _check([0.0, -0.0, 1e-300, 0.25, -0.125]).all()
