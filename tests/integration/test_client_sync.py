"""The pusher against the real in-process server and the real central database.

A full sync of the demo portal mirrors every table exactly; an unchanged tick opens no stream; the
measurement caps, the shared-`received_at` boundary and the safety lag hold end to end.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, insert

from fleet_client import portal_schema as t
from fleet_client.buildrate import write_backlog
from fleet_client.demo import create_demo_portal
from fleet_client.source import SqlSource
from tests.support.client_sync import (
    Portal,
    assert_mirrored,
    central_count,
    central_tables,
    now_clock,
    sync_status,
)
from tests.support.inprocess import InProcessServer


def test_demo_portal_is_mirrored_exactly_and_an_unchanged_tick_sends_nothing(
    server: InProcessServer,
    new_customer: Callable[..., Any],
    engine: Engine,
    make_rig,
    tmp_path: Path,
) -> None:
    demo = create_demo_portal(tmp_path / "demo.db")
    customer = new_customer("DEMO")
    source = SqlSource(demo.url)
    rig = make_rig(server.target, customer.token, source)
    report = rig.pusher.tick()
    assert report.ok, report.summary()
    assert rig.counting.calls == [
        "PushSites",
        "PushDevices",
        "PushMunicipalities",
        "PushTariffs",
        "PushMeasurements",
    ]
    assert report.rows_sent == demo.measurements == 4_032
    assert report.result("measurements").accepted == 4_032
    assert_mirrored(source, engine, customer.id)
    tables = central_tables(engine, customer.id)
    assert {len(tables[name]) for name in ("municipalities", "tariffs")} == {1}
    assert len(tables["tariff_periods"]) == 2
    assert {row[2] for row in tables["tariff_periods"]} == {"Peak", "Off-Peak"}
    pushed_at = sync_status(engine, customer.id)
    assert set(pushed_at) == {"sites", "devices", "municipalities", "tariffs", "measurements"}

    rig.clock.advance(20)
    calls_before = len(rig.counting.calls)
    report = rig.pusher.tick()
    assert report.ok
    assert rig.counting.calls[calls_before:] == []  # no reference stream, no measurement stream
    assert report.streams_opened == 0
    assert report.rows_sent == 0
    assert sync_status(engine, customer.id) == pushed_at
    source.close()


def test_a_portal_change_is_mirrored_including_deletions(
    server: InProcessServer, new_customer, engine: Engine, make_rig, tmp_path: Path
) -> None:
    demo = create_demo_portal(tmp_path / "demo.db", days=1)
    customer = new_customer("DEMO")
    source = SqlSource(demo.url)
    rig = make_rig(server.target, customer.token, source)
    assert rig.pusher.tick().ok
    portal_engine = create_engine(demo.url)
    with portal_engine.begin() as conn:
        conn.execute(t.devices.delete().where(t.devices.c.id == 2))
        conn.execute(t.tariff_periods.update().where(t.tariff_periods.c.id == 1).values(rate=Decimal("4.05")))
    rig.clock.advance(20)
    calls = len(rig.counting.calls)
    report = rig.pusher.tick()
    assert report.ok, report.summary()
    assert rig.counting.calls[calls:] == ["PushDevices", "PushTariffs"]
    assert_mirrored(source, engine, customer.id)
    portal_engine.dispose()
    source.close()


def test_20000_backlog_rows_take_four_capped_ticks(
    server: InProcessServer, new_customer, engine: Engine, make_rig, portal: Portal
) -> None:
    write_backlog(portal.url, 20_000, devices=40)
    customer = new_customer("BACKFILL")
    rig = make_rig(server.target, customer.token, portal.source, max_rows_per_tick=5_000, batch_size=500)
    sent, counts, backlog = [], [], []
    for _ in range(4):
        report = rig.pusher.tick()
        assert report.ok, report.summary()
        sent.append(report.rows_sent)
        backlog.append(report.backlog)
        counts.append(central_count(engine, customer.id))
        rig.clock.advance(20)
    assert sent == [5_000] * 4
    assert counts == [5_000, 10_000, 15_000, 20_000]
    assert backlog == [True, True, True, False]
    calls = len(rig.counting.calls)
    assert rig.pusher.tick().rows_sent == 0
    assert rig.counting.calls[calls:] == []
    assert_mirrored(portal.source, engine, customer.id)


def _readings(count: int, received_at: Callable[[int], datetime], first: datetime) -> list[dict[str, Any]]:
    return [
        {
            "device_id": 1 + i % 3,
            "metric": "energy_kwh",
            "time": first + timedelta(minutes=15 * (i // 3)),
            "value": i / 10,
            "received_at": received_at(i),
        }
        for i in range(count)
    ]


def test_rows_sharing_one_received_at_across_batches_arrive_once(
    server: InProcessServer, new_customer, engine: Engine, make_rig, portal: Portal
) -> None:
    clock = now_clock()
    shared = clock.now() - timedelta(minutes=1)
    with portal.engine.begin() as conn:
        conn.execute(
            insert(t.measurements), _readings(1_234, lambda i: shared, clock.now() - timedelta(days=5))
        )
    customer = new_customer("SHARED")
    rig = make_rig(
        server.target, customer.token, portal.source, clock=clock, batch_size=500, max_rows_per_tick=700
    )
    first, second = rig.pusher.tick(), rig.pusher.tick()
    assert (first.rows_sent, second.rows_sent) == (700, 534)
    assert first.result("measurements").accepted + second.result("measurements").accepted == 1_234
    assert first.result("measurements").duplicates + second.result("measurements").duplicates == 0
    third = rig.pusher.tick()
    assert third.rows_sent == 0
    assert third.streams_opened == 0
    assert central_count(engine, customer.id) == 1_234
    assert_mirrored(portal.source, engine, customer.id)


def test_a_late_commit_inside_the_safety_lag_is_not_skipped(
    server: InProcessServer, new_customer, engine: Engine, make_rig, portal: Portal
) -> None:
    clock = now_clock()
    now = clock.now()
    with portal.engine.begin() as conn:  # committed early, received 1 s ago: inside the 5 s lag
        conn.execute(
            insert(t.measurements),
            [
                {
                    "device_id": 1,
                    "metric": "power_w",
                    "time": now - timedelta(minutes=15),
                    "value": 1.0,
                    "received_at": now - timedelta(seconds=1),
                }
            ],
        )
    customer = new_customer("LAG")
    rig = make_rig(server.target, customer.token, portal.source, clock=clock)
    assert rig.pusher.tick().rows_sent == 0
    with portal.engine.begin() as conn:  # a slower transaction commits now with an older received_at
        conn.execute(
            insert(t.measurements),
            [
                {
                    "device_id": 2,
                    "metric": "power_w",
                    "time": now - timedelta(minutes=15),
                    "value": 2.0,
                    "received_at": now - timedelta(seconds=4),
                }
            ],
        )
    clock.advance(5)
    assert rig.pusher.tick().rows_sent == 2
    assert central_count(engine, customer.id) == 2
    assert_mirrored(portal.source, engine, customer.id)
