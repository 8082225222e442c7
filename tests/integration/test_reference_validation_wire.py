"""Every validation rule for reference data over the wire: status, field path, BadRequest, nothing written."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import grpc
import pytest
from fleet.v1 import resources_pb2 as res
from google.protobuf import timestamp_pb2

from fleet_server.app import App
from fleet_server.clock import FakeClock
from fleet_server.config import Settings
from fleet_server.db.session import Database
from fleet_server.domain.customers import create_customer
from tests.support.clients import Stubs, bad_request_fields, error_reason, rejected
from tests.support.database import truncate_all
from tests.support.inprocess import InProcessServer
from tests.support.reference_data import (
    db_state,
    device,
    municipality,
    push,
    reference_tariff,
    renumbered_tariff,
    site,
    ts,
)

NOW = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def tree(database_url, engine):
    """One server and one customer with a stored tree for the whole rule table.

    Every case is a rejected push, which writes nothing, so the cases can share the tree;
    that each one left it untouched is exactly what they assert.
    """
    truncate_all(engine)
    settings = Settings(database_url=database_url, listen="127.0.0.1:0", shutdown_grace_s=1.0)
    app = App(settings=settings, db=Database.from_url(database_url, pool_size=4), clock=FakeClock(NOW))
    server = InProcessServer(app).start()
    stubs = Stubs.connect(server.target)
    token = app.db.transaction(create_customer, "ACME", "Acme", NOW).token
    push(stubs, token, "sites", [site(1), site(2)])
    push(stubs, token, "devices", [device(1, 1), device(2, 2)])
    push(stubs, token, "municipalities", [municipality(5)])
    push(stubs, token, "tariffs", [reference_tariff()])
    yield stubs, token
    stubs.close()
    server.stop()
    app.close()


@dataclass(frozen=True)
class Case:
    resource: str
    items: Callable[[], list[Any]]
    field: str
    message: str


def _tariff_with(**fields: Any) -> Callable[[], list[Any]]:
    return lambda: [reference_tariff(**fields)]


def _period_with(index: int, **fields: Any) -> Callable[[], list[Any]]:
    def build() -> list[Any]:
        tariff = reference_tariff()
        for key, value in fields.items():
            setattr(tariff.periods[index], key, value)
        return [tariff]

    return build


def _without_effective_from() -> list[Any]:
    tariff = reference_tariff()
    tariff.ClearField("effective_from")
    return [tariff]


_Y2K = datetime(2000, 1, 1, tzinfo=UTC)
_TOO_LONG = "€" * 257
_OVER_LIMIT = "must be at most 256 characters (got 257)"
_BEFORE_Y2K = timestamp_pb2.Timestamp(seconds=int(_Y2K.timestamp()) - 1)

INVALID: dict[str, Case] = {
    "site id 0": Case("sites", lambda: [site(1), site(0)], "sites[1].id", "must be > 0"),
    "site id negative": Case("sites", lambda: [site(-4)], "sites[0].id", "must be > 0"),
    "site empty name": Case("sites", lambda: [site(1, name=" ")], "sites[0].name", "must not be empty"),
    "site bad timezone": Case(
        "sites", lambda: [site(1, timezone="Mars/Olympus_Mons")], "sites[0].timezone", "unknown IANA"
    ),
    "site timezone path": Case(
        "sites", lambda: [site(1, timezone="../../etc/passwd")], "sites[0].timezone", "unknown IANA"
    ),
    "site municipality id 0": Case(
        "sites", lambda: [site(1, municipality_id=0)], "sites[0].municipality_id", "must be > 0"
    ),
    "site tariff id negative": Case(
        "sites", lambda: [site(1, tariff_id=-1)], "sites[0].tariff_id", "must be > 0"
    ),
    "site NUL in address": Case("sites", lambda: [site(1, address="a\x00b")], "sites[0].address", "NUL"),
    "site duplicate id": Case(
        "sites", lambda: [site(1), site(2), site(1)], "sites[2].id", "duplicate id 1 (also at sites[0])"
    ),
    "device id 0": Case("devices", lambda: [device(0, 1)], "devices[0].id", "must be > 0"),
    "device site id 0": Case("devices", lambda: [device(3, 0)], "devices[0].site_id", "must be > 0"),
    "device empty name": Case(
        "devices", lambda: [device(3, 1, name="")], "devices[0].name", "must not be empty"
    ),
    "device duplicate id": Case(
        "devices", lambda: [device(3, 1), device(3, 2)], "devices[1].id", "duplicate id 3"
    ),
    "municipality id 0": Case(
        "municipalities", lambda: [municipality(0)], "municipalities[0].id", "must be > 0"
    ),
    "municipality empty name": Case(
        "municipalities",
        lambda: [res.Municipality(id=6, name="")],
        "municipalities[0].name",
        "must not be empty",
    ),
    "municipality duplicate id": Case(
        "municipalities", lambda: [municipality(6), municipality(6)], "municipalities[1].id", "duplicate id 6"
    ),
    "tariff id 0": Case(
        "tariffs", lambda: [reference_tariff(), renumbered_tariff(0)], "tariffs[1].id", "must be > 0"
    ),
    "tariff municipality id 0": Case(
        "tariffs", _tariff_with(municipality_id=0), "tariffs[0].municipality_id", "must be > 0"
    ),
    "tariff empty name": Case("tariffs", _tariff_with(name=""), "tariffs[0].name", "must not be empty"),
    "tariff effective_from unset": Case(
        "tariffs", _without_effective_from, "tariffs[0].effective_from", "must be set"
    ),
    "tariff effective_from before 2000": Case(
        "tariffs", _tariff_with(effective_from=_BEFORE_Y2K), "tariffs[0].effective_from", "before 2000"
    ),
    "tariff effective_to equal": Case(
        "tariffs",
        _tariff_with(effective_to=ts(datetime(2024, 7, 1, tzinfo=UTC))),
        "tariffs[0].effective_to",
        "must be after effective_from",
    ),
    "tariff effective_to earlier": Case(
        "tariffs",
        _tariff_with(effective_to=ts(datetime(2023, 7, 1, tzinfo=UTC))),
        "tariffs[0].effective_to",
        "must be after effective_from",
    ),
    "tariff default_rate not decimal": Case(
        "tariffs", _tariff_with(default_rate="abc"), "tariffs[0].default_rate", "must be a decimal number"
    ),
    "tariff default_rate negative": Case(
        "tariffs", _tariff_with(default_rate="-0.01"), "tariffs[0].default_rate", "must not be negative"
    ),
    "tariff default_rate NaN": Case(
        "tariffs", _tariff_with(default_rate="NaN"), "tariffs[0].default_rate", "must be a decimal number"
    ),
    "tariff fixed_charge exponent": Case(
        "tariffs", _tariff_with(fixed_charge="1e3"), "tariffs[0].fixed_charge", "must be a decimal number"
    ),
    "tariff fixed_charge empty": Case(
        "tariffs", _tariff_with(fixed_charge=""), "tariffs[0].fixed_charge", "must be a decimal number"
    ),
    "tariff fixed_charge too long": Case(
        "tariffs", _tariff_with(fixed_charge="1" * 40), "tariffs[0].fixed_charge", "at most 15 digits"
    ),
    "tariff vat over 100": Case(
        "tariffs", _tariff_with(vat_percent="100.01"), "tariffs[0].vat_percent", "between 0 and 100"
    ),
    "tariff vat negative": Case(
        "tariffs", _tariff_with(vat_percent="-1"), "tariffs[0].vat_percent", "must not be negative"
    ),
    "tariff currency lower case": Case(
        "tariffs", _tariff_with(currency="zar"), "tariffs[0].currency", "ISO 4217"
    ),
    "tariff currency too long": Case(
        "tariffs", _tariff_with(currency="RANDS"), "tariffs[0].currency", "ISO 4217"
    ),
    "tariff currency empty": Case("tariffs", _tariff_with(currency=""), "tariffs[0].currency", "ISO 4217"),
    "period days 0": Case(
        "tariffs", _period_with(1, days_of_week=0), "tariffs[0].periods[1].days_of_week", "must be 1..127"
    ),
    "period days 128": Case(
        "tariffs", _period_with(0, days_of_week=128), "tariffs[0].periods[0].days_of_week", "must be 1..127"
    ),
    "period start 24:00": Case(
        "tariffs", _period_with(0, start_time="24:00"), "tariffs[0].periods[0].start_time", "00:00..23:59"
    ),
    "period start one digit hour": Case(
        "tariffs", _period_with(0, start_time="7:00"), "tariffs[0].periods[0].start_time", "HH:MM"
    ),
    "period end 24:01": Case(
        "tariffs", _period_with(0, end_time="24:01"), "tariffs[0].periods[0].end_time", "00:00..24:00"
    ),
    "period end minute 60": Case(
        "tariffs", _period_with(0, end_time="20:60"), "tariffs[0].periods[0].end_time", "HH:MM"
    ),
    "period start equals end": Case(
        "tariffs",
        _period_with(0, start_time="17:00", end_time="17:00"),
        "tariffs[0].periods[0].end_time",
        "must differ from start_time",
    ),
    "period rate comma": Case(
        "tariffs", _period_with(1, rate="1,20"), "tariffs[0].periods[1].rate", "must be a decimal number"
    ),
    "period rate negative": Case(
        "tariffs", _period_with(1, rate="-1.20"), "tariffs[0].periods[1].rate", "must not be negative"
    ),
    "period id 0": Case("tariffs", _period_with(1, id=0), "tariffs[0].periods[1].id", "must be > 0"),
    "period empty name": Case(
        "tariffs", _period_with(1, name=""), "tariffs[0].periods[1].name", "must not be empty"
    ),
    "period duplicate id": Case(
        "tariffs",
        _period_with(1, id=1),
        "tariffs[0].periods[1].id",
        "duplicate id 1 (also at tariffs[0].periods[0])",
    ),
    "tariff duplicate id": Case(
        "tariffs", lambda: [reference_tariff(), reference_tariff()], "tariffs[1].id", "duplicate id 10"
    ),
    # Length limits: every text field, in characters (a euro sign is one character, three bytes).
    "site name too long": Case(
        "sites", lambda: [site(1), site(2, name=_TOO_LONG)], "sites[1].name", _OVER_LIMIT
    ),
    "site address too long": Case(
        "sites", lambda: [site(1, address=_TOO_LONG)], "sites[0].address", _OVER_LIMIT
    ),
    "site address of 3.9 MB": Case(
        "sites",
        lambda: [site(1, address="A" * 3_900_000)],
        "sites[0].address",
        "must be at most 256 characters (got 3,900,000)",
    ),
    "site timezone too long": Case(
        "sites",
        lambda: [site(1, timezone="Africa/" + "J" * 58)],
        "sites[0].timezone",
        "must be at most 64 characters (got 65)",
    ),
    "device name too long": Case(
        "devices", lambda: [device(3, 1, name=_TOO_LONG)], "devices[0].name", _OVER_LIMIT
    ),
    "device serial number too long": Case(
        "devices", lambda: [device(3, 1, serial_number=_TOO_LONG)], "devices[0].serial_number", _OVER_LIMIT
    ),
    "device kind too long": Case(
        "devices", lambda: [device(3, 1, kind=_TOO_LONG)], "devices[0].kind", _OVER_LIMIT
    ),
    "municipality name too long": Case(
        "municipalities", lambda: [municipality(6, name=_TOO_LONG)], "municipalities[0].name", _OVER_LIMIT
    ),
    "municipality region too long": Case(
        "municipalities", lambda: [municipality(6, region=_TOO_LONG)], "municipalities[0].region", _OVER_LIMIT
    ),
    "tariff name too long": Case("tariffs", _tariff_with(name=_TOO_LONG), "tariffs[0].name", _OVER_LIMIT),
    "period name too long": Case(
        "tariffs", _period_with(1, name=_TOO_LONG), "tariffs[0].periods[1].name", _OVER_LIMIT
    ),
}


@pytest.mark.parametrize("case", INVALID.values(), ids=list(INVALID))
def test_invalid_item_rejects_the_whole_snapshot(tree, engine, case):
    stubs, token = tree
    before = db_state(engine)
    error = rejected(lambda: push(stubs, token, case.resource, case.items()))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details().startswith(f"{case.field}: ")
    assert case.message in error.details()
    assert bad_request_fields(error) == [case.field]
    assert error_reason(error) == "INVALID_ARGUMENT"
    assert db_state(engine) == before
