"""ComputeCosts request validation: the range and the codes, every problem reported at once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from fleet_server.domain.costs import CostQuery, check_query
from fleet_server.errors import InvalidArgument

START = datetime(2026, 3, 1, tzinfo=UTC)


def problems(query: CostQuery, max_span_days: int = 400) -> list[str]:
    with pytest.raises(InvalidArgument) as err:
        check_query(query, max_span_days)
    return [str(v) for v in err.value.violations]


def test_a_valid_range_is_returned():
    assert check_query(CostQuery((), START, START + timedelta(days=400)), 400) == (
        START,
        START + timedelta(days=400),
    )


def test_unset_timestamps_are_named():
    assert problems(CostQuery((), None, None)) == ["start: must be set", "end: must be set"]


def test_end_must_be_after_start():
    assert problems(CostQuery((), START, START)) == ["end: must be after start"]
    assert problems(CostQuery((), START, START - timedelta(seconds=1))) == ["end: must be after start"]


def test_span_is_capped():
    too_long = CostQuery((), START, START + timedelta(days=31, microseconds=1))
    assert problems(too_long, max_span_days=31) == ["end: range must not span more than 31 days"]


def test_timestamps_before_2000_are_rejected():
    assert problems(CostQuery((), datetime(1970, 1, 1, tzinfo=UTC), START)) == [
        "start: must not be before 2000-01-01T00:00:00Z"
    ]


def test_malformed_codes_are_named_with_their_index():
    assert problems(CostQuery(("ACME", "acme", "X"), START, START + timedelta(days=1))) == [
        "codes[1]: must match [A-Z0-9_-]{2,32}",
        "codes[2]: must match [A-Z0-9_-]{2,32}",
    ]


def test_a_range_reaching_into_the_future_is_allowed():
    """A month's bill while the month runs: nothing in the range has to have happened yet."""
    future = datetime(2099, 1, 1, tzinfo=UTC)
    assert check_query(CostQuery(("ACME",), future, future + timedelta(days=31)), 400)[0] == future
