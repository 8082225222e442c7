"""Reference-data builders and push helpers shared by the snapshot and detail tests."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from fleet.v1 import ingest_service_pb2 as ingest_pb
from fleet.v1 import resources_pb2 as res
from google.protobuf import timestamp_pb2
from sqlalchemy import Engine, text

from tests.support.clients import Stubs, bearer

WEEKDAYS = 0b0011111
WEEKENDS = 0b1100000


def ts(value: datetime) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(value)
    return stamp


def site(id: int, name: str | None = None, **fields: Any) -> res.Site:
    values: dict[str, Any] = {
        "name": f"Site {id}" if name is None else name,
        "timezone": "Africa/Johannesburg",
    }
    values.update(fields)
    return res.Site(id=id, **values)


def device(id: int, site_id: int, name: str | None = None, **fields: Any) -> res.Device:
    values: dict[str, Any] = {
        "name": f"Meter {id}" if name is None else name,
        "serial_number": f"SN-{id}",
        "kind": "meter",
    }
    values.update(fields)
    return res.Device(id=id, site_id=site_id, **values)


def municipality(id: int, name: str | None = None, region: str = "Gauteng") -> res.Municipality:
    return res.Municipality(id=id, name=f"City {id}" if name is None else name, region=region)


def period(id: int, name: str, days: int, start: str, end: str, rate: str) -> res.TariffPeriod:
    return res.TariffPeriod(id=id, name=name, days_of_week=days, start_time=start, end_time=end, rate=rate)


def tariff(
    id: int,
    municipality_id: int,
    periods: Sequence[res.TariffPeriod] = (),
    name: str | None = None,
    **fields: Any,
) -> res.Tariff:
    values: dict[str, Any] = {
        "name": f"Tariff {id}" if name is None else name,
        "is_active": True,
        "effective_from": ts(datetime(2024, 7, 1, tzinfo=UTC)),
        "default_rate": "2.10",
        "fixed_charge": "250.00",
        "vat_percent": "15",
        "currency": "ZAR",
    }
    values.update(fields)
    return res.Tariff(id=id, municipality_id=municipality_id, periods=list(periods), **values)


def reference_tariff(name: str = "Domestic TOU", municipality_id: int = 5, **fields: Any) -> res.Tariff:
    """The issue's reference scenario: "Domestic TOU" with Peak and Off-Peak."""
    return tariff(
        10,
        municipality_id,
        [
            period(1, "Peak", WEEKDAYS, "17:00", "20:00", "3.75"),
            period(2, "Off-Peak", WEEKENDS, "00:00", "23:59", "1.20"),
        ],
        name=name,
        **fields,
    )


_REQUESTS: dict[str, tuple[Any, str, str]] = {
    "sites": (ingest_pb.PushSitesRequest, "sites", "PushSites"),
    "devices": (ingest_pb.PushDevicesRequest, "devices", "PushDevices"),
    "municipalities": (ingest_pb.PushMunicipalitiesRequest, "municipalities", "PushMunicipalities"),
    "tariffs": (ingest_pb.PushTariffsRequest, "tariffs", "PushTariffs"),
}


def renumbered_tariff(tariff_id: int) -> res.Tariff:
    """The reference tariff under another id: a second, otherwise identical tariff."""
    tariff = reference_tariff()
    tariff.id = tariff_id
    return tariff


def push(stubs: Stubs, token: str, resource: str, items: Sequence[Any], *, chunk: int = 0) -> Any:
    """Push `items` as one snapshot of `resource`, split into messages of `chunk` items (0 = one)."""
    request_type, field, method = _REQUESTS[resource]
    size = chunk or max(len(items), 1)
    messages = [request_type(**{field: items[i : i + size]}) for i in range(0, max(len(items), 1), size)]
    return getattr(stubs.ingest, method)(iter(messages), metadata=bearer(token), timeout=60)


def counts(response: Any) -> tuple[int, int, int, int, int]:
    """(received, inserted, updated, unchanged, deleted) of a push response."""
    s = response.summary
    return (s.received, s.inserted, s.updated, s.unchanged, s.deleted)


_STATE_QUERIES = {
    "sites": "SELECT customer_id, id, name, address, timezone, municipality_id, tariff_id FROM fleet.sites",
    "devices": "SELECT customer_id, id, site_id, name, serial_number, kind FROM fleet.devices",
    "municipalities": "SELECT customer_id, id, name, region FROM fleet.municipalities",
    "tariffs": (
        "SELECT customer_id, id, municipality_id, name, is_active, effective_from, effective_to, "
        "default_rate::text, fixed_charge::text, vat_percent::text, currency FROM fleet.tariffs"
    ),
    "tariff_periods": (
        "SELECT customer_id, tariff_id, id, name, days_of_week, start_minute, end_minute, rate::text "
        "FROM fleet.tariff_periods"
    ),
    "sync_status": "SELECT customer_id, resource, last_push_at, last_received FROM fleet.sync_status",
}


def db_state(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    """Every reference table's rows (sorted), to assert that a rejected push changed nothing."""
    with engine.connect() as conn:
        return {
            table: sorted(tuple(row) for row in conn.execute(text(query)))
            for table, query in _STATE_QUERIES.items()
        }


def table_rows(engine: Engine, table: str, customer_id: int) -> list[tuple[Any, ...]]:
    rows = db_state(engine)[table]
    return [row[1:] for row in rows if row[0] == customer_id]
