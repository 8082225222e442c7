"""Reference-data snapshots through the wire: upsert, delete-missing, cascades, tenancy, sync status."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from sqlalchemy import text

from tests.support.clients import Stubs, customer_detail
from tests.support.reference_data import (
    WEEKDAYS,
    WEEKENDS,
    counts,
    device,
    municipality,
    period,
    push,
    reference_tariff,
    site,
    table_rows,
    tariff,
)


@pytest.fixture
def stubs(clocked: Stubs) -> Stubs:
    """Stubs of a server on `fake_clock`, which stands still until a test moves it."""
    return clocked


def test_reference_scenario_lands_once_and_resolves_in_detail(stubs, new_customer, admin_token, engine):
    acme = new_customer("ACME")
    reply = push(stubs, acme.token, "municipalities", [municipality(5, "Phase23 Test City")])
    assert counts(reply) == (1, 1, 0, 0, 0)
    reply = push(stubs, acme.token, "tariffs", [reference_tariff()])
    assert counts(reply) == (1, 1, 0, 0, 0)
    assert reply.periods_written == 2

    assert len(table_rows(engine, "municipalities", acme.id)) == 1
    assert len(table_rows(engine, "tariffs", acme.id)) == 1
    assert table_rows(engine, "tariff_periods", acme.id) == [
        (10, 1, "Peak", WEEKDAYS, 17 * 60, 20 * 60, "3.75"),
        (10, 2, "Off-Peak", WEEKENDS, 0, 23 * 60 + 59, "1.20"),
    ]

    detail = customer_detail(stubs, admin_token, "ACME")
    assert [m.name for m in detail.municipalities] == ["Phase23 Test City"]
    (view,) = detail.tariffs
    assert view.municipality_name == "Phase23 Test City"
    assert view.tariff.name == "Domestic TOU"
    assert [(p.name, p.days_of_week, p.start_time, p.end_time, p.rate) for p in view.tariff.periods] == [
        ("Peak", WEEKDAYS, "17:00", "20:00", "3.75"),
        ("Off-Peak", WEEKENDS, "00:00", "23:59", "1.20"),
    ]

    again = push(stubs, acme.token, "tariffs", [reference_tariff()])
    assert counts(again) == (1, 0, 0, 1, 0)
    assert again.periods_written == 0
    assert counts(push(stubs, acme.token, "municipalities", [municipality(5, "Phase23 Test City")])) == (
        1,
        0,
        0,
        1,
        0,
    )

    changed = reference_tariff()
    changed.periods[0].rate = "4.10"
    reply = push(stubs, acme.token, "tariffs", [changed])
    assert counts(reply) == (1, 0, 1, 0, 0)
    assert reply.periods_written == 2
    assert [row[-1] for row in table_rows(engine, "tariff_periods", acme.id)] == ["4.10", "1.20"]

    fewer = reference_tariff()
    del fewer.periods[1]
    fewer.periods.append(period(7, "Night", WEEKDAYS, "22:00", "06:00", "0.90"))
    assert push(stubs, acme.token, "tariffs", [fewer]).periods_written == 2
    assert [(r[1], r[2]) for r in table_rows(engine, "tariff_periods", acme.id)] == [
        (1, "Peak"),
        (7, "Night"),
    ]


def test_values_equal_as_numbers_are_unchanged(stubs, new_customer, engine):
    acme = new_customer("ACME")
    push(stubs, acme.token, "municipalities", [municipality(5)])
    push(stubs, acme.token, "tariffs", [reference_tariff()])
    padded = reference_tariff(vat_percent="15.000")
    padded.periods[0].rate = "3.750"
    reply = push(stubs, acme.token, "tariffs", [padded])
    assert counts(reply) == (1, 0, 0, 1, 0)


def test_tariff_row_change_alone_is_an_update(stubs, new_customer):
    acme = new_customer("ACME")
    push(stubs, acme.token, "municipalities", [municipality(5)])
    push(stubs, acme.token, "tariffs", [reference_tariff()])
    reply = push(stubs, acme.token, "tariffs", [reference_tariff(is_active=False)])
    assert counts(reply) == (1, 0, 1, 0, 0)
    assert reply.periods_written == 0


def test_snapshot_split_over_messages_is_one_snapshot(stubs, new_customer, engine):
    acme = new_customer("ACME")
    sites = [site(i) for i in range(1, 8)]
    assert counts(push(stubs, acme.token, "sites", sites, chunk=3)) == (7, 7, 0, 0, 0)
    devices = [device(i, site_id=1 + i % 7) for i in range(1, 21)]
    assert counts(push(stubs, acme.token, "devices", devices, chunk=6)) == (20, 20, 0, 0, 0)
    assert [r[0] for r in table_rows(engine, "devices", acme.id)] == list(range(1, 21))
    # The same snapshot in other message sizes changes nothing, and nothing is deleted.
    assert counts(push(stubs, acme.token, "devices", devices, chunk=1)) == (20, 0, 0, 20, 0)


def test_missing_rows_are_deleted_and_changed_rows_updated(stubs, new_customer, engine):
    acme = new_customer("ACME")
    push(stubs, acme.token, "sites", [site(1), site(2), site(3)])
    reply = push(stubs, acme.token, "sites", [site(1), site(3, name="Renamed"), site(4)])
    assert counts(reply) == (3, 1, 1, 1, 1)
    assert [(r[0], r[1]) for r in table_rows(engine, "sites", acme.id)] == [
        (1, "Site 1"),
        (3, "Renamed"),
        (4, "Site 4"),
    ]


def test_optional_site_references_round_trip_and_clear(stubs, new_customer, engine):
    acme = new_customer("ACME")
    push(stubs, acme.token, "sites", [site(1, municipality_id=5, tariff_id=99, timezone="")])
    assert table_rows(engine, "sites", acme.id) == [(1, "Site 1", "", "UTC", 5, 99)]
    reply = push(stubs, acme.token, "sites", [site(1, timezone="")])
    assert counts(reply) == (1, 0, 1, 0, 0)
    assert table_rows(engine, "sites", acme.id) == [(1, "Site 1", "", "UTC", None, None)]


@pytest.mark.parametrize("resource", ["sites", "municipalities", "tariffs"])
def test_empty_snapshot_deletes_all_rows_of_that_kind(stubs, new_customer, engine, resource):
    acme = new_customer("ACME")
    push(stubs, acme.token, "sites", [site(1), site(2)])
    push(stubs, acme.token, "municipalities", [municipality(5), municipality(6)])
    push(stubs, acme.token, "tariffs", [reference_tariff(), tariff(11, 6)])
    reply = push(stubs, acme.token, resource, [])
    assert counts(reply) == (0, 0, 0, 0, 2)
    assert table_rows(engine, resource, acme.id) == []
    for other in (
        {"sites", "municipalities", "tariffs"}
        - {resource}
        - ({"tariffs"} if resource == "municipalities" else set())
    ):
        assert len(table_rows(engine, other, acme.id)) == 2


def test_deleting_a_site_cascades_to_its_devices_counting_only_sites(stubs, new_customer, engine):
    acme = new_customer("ACME")
    push(stubs, acme.token, "sites", [site(1), site(2)])
    push(stubs, acme.token, "devices", [device(1, 1), device(2, 1), device(3, 2)])
    reply = push(stubs, acme.token, "sites", [site(2)])
    assert counts(reply) == (1, 0, 0, 1, 1)
    assert [r[0] for r in table_rows(engine, "devices", acme.id)] == [3]


def test_deleting_a_municipality_cascades_to_tariffs_and_periods(stubs, new_customer, engine):
    acme = new_customer("ACME")
    push(stubs, acme.token, "municipalities", [municipality(5), municipality(6)])
    push(
        stubs,
        acme.token,
        "tariffs",
        [reference_tariff(), tariff(11, 6, [period(1, "All", 127, "00:00", "24:00", "1")])],
    )
    reply = push(stubs, acme.token, "municipalities", [municipality(6)])
    assert counts(reply) == (1, 0, 0, 1, 1)
    assert [r[0] for r in table_rows(engine, "tariffs", acme.id)] == [11]
    assert [(r[0], r[1]) for r in table_rows(engine, "tariff_periods", acme.id)] == [(11, 1)]


def test_deleting_a_tariff_deletes_its_periods(stubs, new_customer, engine):
    acme = new_customer("ACME")
    push(stubs, acme.token, "municipalities", [municipality(5)])
    push(stubs, acme.token, "tariffs", [reference_tariff()])
    assert counts(push(stubs, acme.token, "tariffs", [])) == (0, 0, 0, 0, 1)
    assert table_rows(engine, "tariff_periods", acme.id) == []


def test_same_local_ids_stay_apart_between_customers(stubs, new_customer, engine):
    acme, globex = new_customer("ACME"), new_customer("GLOBEX")
    for customer, label in ((acme, "acme"), (globex, "globex")):
        push(stubs, customer.token, "sites", [site(1, name=f"{label} HQ")])
        push(stubs, customer.token, "devices", [device(1, 1, name=f"{label} meter")])
        push(stubs, customer.token, "municipalities", [municipality(5, name=f"{label} city")])
        push(stubs, customer.token, "tariffs", [reference_tariff(name=f"{label} TOU")])
    # One customer's empty snapshots never touch the other's rows.
    for resource in ("devices", "sites", "tariffs", "municipalities"):
        push(stubs, acme.token, resource, [])
    assert table_rows(engine, "sites", acme.id) == []
    assert table_rows(engine, "sites", globex.id) == [(1, "globex HQ", "", "Africa/Johannesburg", None, None)]
    assert [r[2] for r in table_rows(engine, "devices", globex.id)] == ["globex meter"]
    assert [r[2] for r in table_rows(engine, "tariffs", globex.id)] == ["globex TOU"]
    assert len(table_rows(engine, "tariff_periods", globex.id)) == 2


def test_every_successful_push_is_recorded_with_time_and_size(stubs, new_customer, admin_token, fake_clock):
    acme = new_customer("ACME")
    push(stubs, acme.token, "sites", [site(1), site(2)])
    fake_clock.advance(timedelta(minutes=5))
    push(stubs, acme.token, "devices", [device(1, 1)])
    with pytest.raises(grpc.RpcError):
        push(stubs, acme.token, "sites", [site(0)])  # rejected: not recorded
    sync = {s.resource: s for s in customer_detail(stubs, admin_token, "ACME").sync}
    assert sorted(sync) == ["devices", "sites"]
    assert sync["sites"].last_received == 2
    assert sync["sites"].last_push_at.ToDatetime(tzinfo=UTC) == datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
    assert sync["devices"].last_push_at.ToDatetime(tzinfo=UTC) == datetime(2026, 1, 5, 12, 5, tzinfo=UTC)
    assert not sync["sites"].HasField("high_water_received_at")


def test_ten_thousand_devices_apply_in_one_transaction(stubs, new_customer, engine):
    acme = new_customer("ACME")
    push(stubs, acme.token, "sites", [site(i) for i in range(1, 101)])
    devices = [device(i, site_id=1 + i % 100) for i in range(1, 10_001)]
    started = time.perf_counter()
    reply = push(stubs, acme.token, "devices", devices, chunk=2_000)
    elapsed = time.perf_counter() - started
    with engine.connect() as conn:
        xmins = conn.execute(
            text("SELECT count(DISTINCT xmin::text) FROM fleet.devices WHERE customer_id = :c"),
            {"c": acme.id},
        ).scalar()
    assert counts(reply) == (10_000, 10_000, 0, 0, 0)
    assert xmins == 1  # every row written by the same transaction
    print(f"\n10,000-device snapshot applied in {elapsed:.3f}s")
    half = devices[:5_000]
    for d in half:
        d.kind = "inverter"
    reply = push(stubs, acme.token, "devices", half, chunk=2_000)
    assert counts(reply) == (5_000, 0, 5_000, 0, 5_000)


def test_a_tariff_pushed_without_periods_loses_them_all(stubs, new_customer, engine):
    acme = new_customer("ACME")
    push(stubs, acme.token, "municipalities", [municipality(5)])
    push(stubs, acme.token, "tariffs", [reference_tariff()])
    bare = reference_tariff()
    del bare.periods[:]
    reply = push(stubs, acme.token, "tariffs", [bare])
    assert counts(reply) == (1, 0, 1, 0, 0)
    assert reply.periods_written == 0
    assert table_rows(engine, "tariff_periods", acme.id) == []
    assert len(table_rows(engine, "tariffs", acme.id)) == 1
