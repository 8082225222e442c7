"""Fleet health, the operator's morning check: per customer, is it pushing, are its devices reporting,
and is its portal about to lose its old token?

Everything is read from what the server keeps anyway: the customers row (tokens, and when the
old token was last used), `sync_status` (last push per resource), the devices table and the
hourly rollups and compressed units (`store.device_activity`: each device's newest reading). Nothing is
written.

A customer's verdict is a set of problems, judged against the request's windows at `now`:

- STALE: no push of any resource for longer than `stale_after` (default 1 h), or none ever
  since it was created that long ago;
- SILENT_DEVICES: devices with no reading for longer than `silent_after` (default 6 h),
  including devices that never reported;
- TOKEN_EXPIRING: the previous token, in its grace window, was used within the last hour and
  the window ends within a day: the portal has not switched and is about to be locked out.

A deactivated customer has no problems (it is meant to be quiet). Cost: one index descent per
(device, metric) pair with readings and one per device, in one REPEATABLE READ snapshot; a page
of customers stops once its devices pass `DEVICES_PER_PAGE`, so no call walks more than that
many devices plus those of one large customer (see docs/DESIGN.md, "Fleet health").
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy.orm import Session

from fleet_server.domain.customers import customer_id_for
from fleet_server.domain.listings import read_consistently
from fleet_server.domain.paging import REFERENCE_PAGES, Page, PageSizes
from fleet_server.errors import InvalidArgument
from fleet_server.store import customers, device_activity, reference, sync_status
from fleet_server.store.customers import TokenState
from fleet_server.store.sync_status import LastPush, SyncRecord

DEFAULT_SILENT_AFTER = timedelta(hours=6)
DEFAULT_STALE_AFTER = timedelta(hours=1)
# The windows are about hours and days; a year-long one is a typo.
MAX_WINDOW = timedelta(days=90)
# TOKEN_EXPIRING: the old token still used this recently, this close to the end of its window.
RECENT_USE = timedelta(hours=1)
EXPIRY_WARNING = timedelta(days=1)
HEALTH_PAGES = PageSizes(default=100, maximum=500)
SILENT_PAGES = REFERENCE_PAGES
# Silent devices each customer's health carries; ListSilentDevices continues from there.
FIRST_SILENT = 10
# A page of customers ends once the devices it covered pass this (it always holds one customer).
DEVICES_PER_PAGE = 50_000


class Problem(StrEnum):
    STALE = "STALE"
    SILENT_DEVICES = "SILENT_DEVICES"
    TOKEN_EXPIRING = "TOKEN_EXPIRING"


@dataclass(frozen=True)
class HealthQuery:
    """What to check: one customer (`code`) or a page of all, and the two windows (None = default)."""

    code: str = ""
    silent_after: timedelta | None = None
    stale_after: timedelta | None = None
    page_size: int = 0
    after_code: str | None = None


@dataclass(frozen=True)
class SilentDevice:
    """A device with no reading for longer than the window; `last_reading_at` None = never reported."""

    device_id: int
    name: str
    site_id: int
    last_reading_at: datetime | None


@dataclass(frozen=True)
class TokenHealth:
    """The customer's tokens: the old one's deadline while its window is open, and its last use."""

    issued_at: datetime
    previous_expires_at: datetime | None
    previous_last_used_at: datetime | None
    previous_used_recently: bool


@dataclass(frozen=True)
class CustomerHealth:
    code: str
    name: str
    is_active: bool
    token: TokenHealth
    sync: list[SyncRecord]
    last_push_at: datetime | None
    newest_reading_at: datetime | None
    device_count: int
    silent: Page[SilentDevice]
    problems: tuple[Problem, ...]

    @property
    def silent_count(self) -> int:
        return self.silent.total_size or 0


@dataclass(frozen=True)
class FleetHealth:
    checked_at: datetime
    silent_after: timedelta
    stale_after: timedelta
    customers: Page[CustomerHealth]


def window(value: timedelta | None, default: timedelta, field: str) -> timedelta:
    """A window from the request: unset = `default`; positive and at most `MAX_WINDOW`."""
    if value is None:
        return default
    if value <= timedelta(0):
        raise InvalidArgument.single(field, "must be positive")
    if value > MAX_WINDOW:
        raise InvalidArgument.single(field, f"must be at most {MAX_WINDOW.days} days")
    return value


def fleet_health(session: Session, query: HealthQuery, now: datetime) -> FleetHealth:
    """The health of one customer, or of a page of customers by code."""
    silent_after = window(query.silent_after, DEFAULT_SILENT_AFTER, "silent_after")
    stale_after = window(query.stale_after, DEFAULT_STALE_AFTER, "stale_after")
    size = HEALTH_PAGES.size(query.page_size)
    read_consistently(session)
    if query.code:
        customer_id_for(session, query.code)  # INVALID_ARGUMENT / NOT_FOUND for a bad code
    states = customers.token_states(session, query.after_code, size + 1, query.code or None)
    devices = reference.device_ids(session, [s.id for s in states[:size]])
    page: list[TokenState] = []
    covered = 0
    for state in states[:size]:
        if page and covered + len(devices[state.id]) > DEVICES_PER_PAGE:
            break
        page.append(state)
        covered += len(devices[state.id])
    ids = [state.id for state in page]
    syncs = sync_status.status_of(session, ids)
    activity = _activities(session, {i: devices[i] for i in ids}, now - silent_after, FIRST_SILENT, 0)
    checked = [
        _customer_health(state, syncs[state.id], activity[state.id], now, stale_after) for state in page
    ]
    return FleetHealth(now, silent_after, stale_after, Page(checked, more=len(page) < len(states)))


def list_silent_devices(
    session: Session,
    code: str,
    silent_after: timedelta | None,
    page_size: int,
    after: int | None,
    now: datetime,
) -> Page[SilentDevice]:
    """The devices of customer `code` silent for longer than the window, by id, after `after`."""
    threshold = window(silent_after, DEFAULT_SILENT_AFTER, "silent_after")
    size = SILENT_PAGES.size(page_size)
    read_consistently(session)
    customer_id = customer_id_for(session, code)
    devices = reference.device_ids(session, [customer_id])
    return _activities(session, devices, now - threshold, size, after or 0)[customer_id].silent


@dataclass(frozen=True)
class FleetState:
    """Which customers exist and are active, and every customer's last push per resource: what the
    metrics re-read from the database now and then (pushes through other servers, restarts)."""

    active: dict[str, bool]
    pushes: list[LastPush]


def fleet_state(session: Session) -> FleetState:
    # sync_status before customers: the order every multi-table lock (erasure, TRUNCATE) takes.
    pushes = sync_status.all_last_pushes(session)
    return FleetState(dict(customers.activity(session)), pushes)


def _customer_health(
    state: TokenState,
    sync: list[SyncRecord],
    activity: DeviceActivity,
    now: datetime,
    stale_after: timedelta,
) -> CustomerHealth:
    token = _token_health(state, now)
    last_push = max((record.last_push_at for record in sync), default=None)
    problems: list[Problem] = []
    if state.is_active:
        if now - (last_push or state.created_at) > stale_after:
            problems.append(Problem.STALE)
        if activity.silent.total_size:
            problems.append(Problem.SILENT_DEVICES)
        expires = token.previous_expires_at
        if expires is not None and token.previous_used_recently and expires - now <= EXPIRY_WARNING:
            problems.append(Problem.TOKEN_EXPIRING)
    return CustomerHealth(
        code=state.code,
        name=state.name,
        is_active=state.is_active,
        token=token,
        sync=sync,
        last_push_at=last_push,
        newest_reading_at=activity.newest_reading_at,
        device_count=activity.devices,
        silent=activity.silent,
        problems=tuple(problems),
    )


@dataclass(frozen=True)
class DeviceActivity:
    """A customer's devices seen at one moment: how many, which are silent, the newest reading of any."""

    devices: int
    silent: Page[SilentDevice]
    newest_reading_at: datetime | None


def _activities(
    session: Session, devices: dict[int, list[int]], threshold: datetime, size: int, after: int
) -> dict[int, DeviceActivity]:
    """Per customer (id → its device ids), the devices whose newest reading is older than `threshold`
    or that never reported: the first `size` after id `after`, and how many in all.

    Two statements for the whole page of customers, whatever its size: the newest readings (a walk
    of the rollup key, see `store.device_activity`) and the listed devices.
    """
    newest = device_activity.newest_readings(session, list(devices))
    silent: dict[int, list[int]] = {}
    for customer_id, ids in devices.items():
        silent[customer_id] = [
            d for d in ids if (last := newest.get((customer_id, d))) is None or last < threshold
        ]
    listed = {c: [d for d in ids if d > after][: size + 1] for c, ids in silent.items()}
    records = reference.devices_with_keys(session, [(c, d) for c, ids in listed.items() for d in ids[:size]])
    latest: dict[int, datetime] = {}
    for (customer_id, _), moment in newest.items():
        if customer_id not in latest or moment > latest[customer_id]:
            latest[customer_id] = moment
    found: dict[int, DeviceActivity] = {}
    for customer_id, ids in devices.items():
        shown = [records[(customer_id, d)] for d in listed[customer_id][:size] if (customer_id, d) in records]
        page = Page(
            items=[SilentDevice(r.id, r.name, r.site_id, newest.get((customer_id, r.id))) for r in shown],
            more=len(listed[customer_id]) > size,
            total_size=len(silent[customer_id]),
        )
        found[customer_id] = DeviceActivity(len(ids), page, latest.get(customer_id))
    return found


def _token_health(state: TokenState, now: datetime) -> TokenHealth:
    expires = state.previous_token_expires_at
    if expires is None or expires <= now:
        return TokenHealth(state.token_issued_at, None, None, previous_used_recently=False)
    used = state.previous_token_last_used_at
    return TokenHealth(
        issued_at=state.token_issued_at,
        previous_expires_at=expires,
        previous_last_used_at=used,
        previous_used_recently=used is not None and now - used <= RECENT_USE,
    )
