"""The rules shared by every kind of data and query: an instant, a range, and free text."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from fleet_server.errors import Violations

# Readings and tariff windows before this are certainly a portal bug (an unset clock, epoch 0).
EARLIEST_TIME = datetime(2000, 1, 1, tzinfo=UTC)
# Clocks drift; more than a day ahead is a wrong timezone or a wrong clock, not drift.
MAX_FUTURE = timedelta(days=1)
# Every free-text field (names, addresses, serial numbers, kinds, regions) is at most this many
# characters (Unicode code points): room for any real value, and a bound on what one row can
# make the server hold and store.
MAX_TEXT_LENGTH = 256


def check_time(
    value: datetime | None,
    path: str,
    problems: Violations,
    *,
    now: datetime | None = None,
    earliest: datetime | None = EARLIEST_TIME,
    latest: datetime | None = None,
) -> bool:
    """Record why `value` is unusable — unset, before `earliest`, after `latest`, or more than a
    day ahead of `now`.

    `now` None drops the upper bound, for times that are legitimately ahead of the clock (a
    tariff's window, published before it applies; a bill for a month still running); `earliest`
    None drops the lower one. True when `value` passed.
    """
    if value is None:
        problems.add(path, "must be set")
    elif earliest is not None and value < earliest:
        problems.add(path, f"must not be before {earliest:%Y-%m-%dT%H:%M:%SZ}")
    elif latest is not None and value > latest:
        problems.add(path, f"must not be after {latest:%Y-%m-%dT%H:%M:%SZ}")
    elif now is not None and value > now + MAX_FUTURE:
        problems.add(path, f"must not be more than {MAX_FUTURE.days} day in the future")
    else:
        return True
    return False


def check_range(
    start: datetime | None,
    end: datetime | None,
    problems: Violations,
    *,
    paths: tuple[str, str] = ("start", "end"),
    earliest: datetime | None = EARLIEST_TIME,
    latest: datetime | None = None,
    end_optional: bool = False,
    max_span: timedelta | None = None,
) -> bool:
    """Record why `[start, end)` is unusable; True when it passed.

    Each end is checked as `check_time` checks an instant, except that an end at or before the
    start is named as such ("must be after start"), the more useful message. The span limit is
    checked only for a range whose ends both passed. `end_optional` lets `end` be unset (an
    open range, such as a tariff still in force).
    """
    start_path, end_path = paths
    start_ok = check_time(start, start_path, problems, earliest=earliest, latest=latest)
    if end is None and end_optional:
        return start_ok
    if start is not None and end is not None and end <= start:
        problems.add(end_path, f"must be after {start_path.rsplit('.', 1)[-1]}")
        return False
    end_ok = check_time(end, end_path, problems, earliest=earliest, latest=latest)
    if not (start_ok and end_ok):
        return False
    assert start is not None
    assert end is not None
    if max_span is not None and end - start > max_span:
        problems.add(end_path, f"range must not span more than {max_span.days} days")
        return False
    return True


def check_text(value: str, path: str, problems: Violations, *, max_length: int = MAX_TEXT_LENGTH) -> bool:
    """Record why free text is unusable — longer than `max_length` characters, or holding NUL.

    The value itself is never echoed: it may be megabytes long. True when `value` passed.
    """
    if len(value) > max_length:
        problems.add(path, f"must be at most {max_length} characters (got {len(value):,})")
    elif "\x00" in value:
        # PostgreSQL text cannot hold NUL; without this the write would fail as an internal error.
        problems.add(path, "must not contain NUL characters")
    else:
        return True
    return False
