"""The one time rule every request shares: an instant, and a `[start, end)` range built on it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from fleet_server.domain.rules import MAX_FUTURE, MAX_TEXT_LENGTH, check_range, check_text, check_time
from fleet_server.errors import Violations

NOW = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
T = datetime(2025, 6, 1, tzinfo=UTC)


def time_problems(value: datetime | None, **options) -> list[str]:
    problems = Violations()
    check_time(value, "time", problems, **options)
    return [str(v) for v in problems.items]


def range_problems(start: datetime | None, end: datetime | None, **options) -> list[str]:
    problems = Violations()
    passed = check_range(start, end, problems, **options)
    assert passed is (not problems.items)
    return [str(v) for v in problems.items]


def test_an_instant_must_be_set_and_not_before_2000():
    assert time_problems(T) == []
    assert time_problems(None) == ["time: must be set"]
    assert time_problems(datetime(1999, 12, 31, tzinfo=UTC)) == [
        "time: must not be before 2000-01-01T00:00:00Z"
    ]
    assert time_problems(datetime(1970, 1, 1, tzinfo=UTC), earliest=None) == []


def test_an_instant_may_be_a_day_ahead_of_now_and_no_more():
    assert time_problems(NOW + MAX_FUTURE, now=NOW) == []
    assert time_problems(NOW + MAX_FUTURE + timedelta(microseconds=1), now=NOW) == [
        "time: must not be more than 1 day in the future"
    ]
    assert time_problems(NOW + timedelta(days=3650)) == []  # no `now`: no upper bound


def test_a_range_names_each_unset_end():
    assert range_problems(None, None) == ["start: must be set", "end: must be set"]


def test_an_end_at_or_before_the_start_is_named_as_such():
    assert range_problems(T, T) == ["end: must be after start"]
    assert range_problems(T, T - timedelta(days=1), earliest=None) == ["end: must be after start"]
    paths = ("tariffs[0].effective_from", "tariffs[0].effective_to")
    assert range_problems(T, T, paths=paths) == ["tariffs[0].effective_to: must be after effective_from"]


def test_a_query_range_may_start_at_any_time():
    assert range_problems(datetime(1970, 1, 1, tzinfo=UTC), T, earliest=None) == []
    assert range_problems(datetime(1970, 1, 1, tzinfo=UTC), T) == [
        "start: must not be before 2000-01-01T00:00:00Z"
    ]


def test_the_span_limit_is_checked_only_for_a_range_whose_ends_passed():
    limit = timedelta(days=31)
    assert range_problems(T, T + limit, max_span=limit) == []
    assert range_problems(T, T + limit + timedelta(microseconds=1), max_span=limit) == [
        "end: range must not span more than 31 days"
    ]
    assert range_problems(datetime(1970, 1, 1, tzinfo=UTC), T, max_span=limit) == [
        "start: must not be before 2000-01-01T00:00:00Z"
    ]


def test_an_open_range_needs_only_its_start():
    assert range_problems(T, None, end_optional=True) == []
    assert range_problems(None, None, end_optional=True) == ["start: must be set"]
    assert range_problems(None, datetime(1999, 1, 1, tzinfo=UTC), end_optional=True) == [
        "start: must be set",
        "end: must not be before 2000-01-01T00:00:00Z",
    ]


def test_text_is_limited_in_characters_not_bytes():
    problems = Violations()
    assert check_text("€" * MAX_TEXT_LENGTH, "name", problems)
    assert not check_text("€" * (MAX_TEXT_LENGTH + 1), "name", problems)
    assert [str(v) for v in problems.items] == ["name: must be at most 256 characters (got 257)"]


def test_text_never_echoes_the_value_and_refuses_nul():
    problems = Violations()
    check_text("secret" * 1000, "address", problems, max_length=10)
    check_text("a\x00b", "kind", problems)
    assert [str(v) for v in problems.items] == [
        "address: must be at most 10 characters (got 6,000)",
        "kind: must not contain NUL characters",
    ]
