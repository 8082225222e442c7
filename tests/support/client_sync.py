"""The pusher test rig: a portal, a pusher wired to an in-process server, table comparisons."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
from sqlalchemy import Engine, text

from fleet_client.client import FleetClient
from fleet_client.pusher import Pusher
from fleet_client.source import SqlSource
from fleet_client.state import PushState
from fleet_server.clock import FakeClock


class CountingInterceptor(
    grpc.UnaryUnaryClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
    grpc.StreamStreamClientInterceptor,
):
    """Counts the RPCs a client starts, per method name (`PushSites`, …)."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def _note(self, details: Any) -> None:
        self.calls.append(details.method.rsplit("/", 1)[-1])

    def intercept_unary_unary(self, continuation, client_call_details, request):
        self._note(client_call_details)
        return continuation(client_call_details, request)

    def intercept_stream_unary(self, continuation, client_call_details, request_iterator):
        self._note(client_call_details)
        return continuation(client_call_details, request_iterator)

    def intercept_stream_stream(self, continuation, client_call_details, request_iterator):
        self._note(client_call_details)
        return continuation(client_call_details, request_iterator)


@dataclass
class Counting:
    """A channel factory that counts channels opened and RPCs started; `redirect` re-aims new channels."""

    interceptor: CountingInterceptor
    channels: int = 0
    redirect: str | None = None

    def __call__(self, target: str, credentials: Any, options: Any) -> grpc.Channel:
        self.channels += 1
        channel = grpc.insecure_channel(self.redirect or target, options=list(options))
        return grpc.intercept_channel(channel, self.interceptor)

    @property
    def calls(self) -> list[str]:
        return self.interceptor.calls


def now_clock() -> FakeClock:
    """A fake clock near real time (the server refuses readings more than a day ahead of its clock)."""
    return FakeClock(datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1))


@dataclass
class Portal:
    url: str
    engine: Engine
    source: SqlSource


@dataclass
class Rig:
    pusher: Pusher
    client: FleetClient
    state: PushState
    clock: FakeClock
    counting: Counting


# -- comparing the portal with the central database ----------------------------------------------


def _minutes(hhmm: str) -> int:
    hours, minutes = hhmm.split(":")
    return int(hours) * 60 + int(minutes)


def portal_tables(source: SqlSource) -> dict[str, set[tuple[Any, ...]]]:
    """Every portal table as comparable rows (periods' times in minutes, as the server stores them)."""
    horizon = datetime(2100, 1, 1, tzinfo=UTC)
    return {
        "sites": {
            (s.id, s.name, s.address, s.timezone or "UTC", s.municipality_id, s.tariff_id)
            for s in source.sites()
        },
        "devices": {(d.id, d.site_id, d.name, d.serial_number, d.kind) for d in source.devices()},
        "municipalities": {(m.id, m.name, m.region) for m in source.municipalities()},
        "tariffs": {
            (
                x.id,
                x.municipality_id,
                x.name,
                x.is_active,
                x.effective_from,
                x.effective_to,
                x.default_rate,
                x.fixed_charge,
                x.vat_percent,
                x.currency,
            )
            for x in source.tariffs()
        },
        "tariff_periods": {
            (x.id, p.id, p.name, p.days_of_week, _minutes(p.start_time), _minutes(p.end_time), p.rate)
            for x in source.tariffs()
            for p in x.periods
        },
        "measurements": {
            (m.device_id, m.metric, m.time, m.value, m.received_at)
            for m in source.measurements_after(None, 10**9, until=horizon)
        },
    }


_CENTRAL = {
    "sites": "id, name, address, timezone, municipality_id, tariff_id",
    "devices": "id, site_id, name, serial_number, kind",
    "municipalities": "id, name, region",
    "tariffs": (
        "id, municipality_id, name, is_active, effective_from, effective_to, default_rate, fixed_charge, "
        "vat_percent, currency"
    ),
    "tariff_periods": "tariff_id, id, name, days_of_week, start_minute, end_minute, rate",
    "measurements": "device_id, metric, time, value, received_at",
}


def central_tables(engine: Engine, customer_id: int) -> dict[str, set[tuple[Any, ...]]]:
    out: dict[str, set[tuple[Any, ...]]] = {}
    with engine.connect() as conn:
        for table, columns in _CENTRAL.items():
            rows = conn.execute(
                text(f"SELECT {columns} FROM fleet.{table} WHERE customer_id = :c"), {"c": customer_id}
            )
            out[table] = {tuple(_utc(v) for v in row) for row in rows}
    return out


def _utc(value: Any) -> Any:
    return value.astimezone(UTC) if isinstance(value, datetime) else value


def central_count(engine: Engine, customer_id: int) -> int:
    with engine.connect() as conn:
        return int(
            conn.scalar(
                text("SELECT count(*) FROM fleet.measurements WHERE customer_id = :c"), {"c": customer_id}
            )
        )


def sync_status(engine: Engine, customer_id: int) -> dict[str, datetime]:
    """When the server last recorded a successful push, per resource."""
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT resource, last_push_at FROM fleet.sync_status WHERE customer_id = :c"),
            {"c": customer_id},
        )
        return {str(resource): pushed for resource, pushed in rows}


def assert_mirrored(source: SqlSource, engine: Engine, customer_id: int) -> None:
    portal, central = portal_tables(source), central_tables(engine, customer_id)
    for table in _CENTRAL:
        assert central[table] == portal[table], table
