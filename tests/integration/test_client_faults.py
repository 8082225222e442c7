"""The pusher's failure paths against the real in-process server: backoff that grows and resets,
the server's refusal messages kept in the state, a refused token, and token rotation mid-push."""

from __future__ import annotations

import io
import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fleet.v1 import admin_service_pb2 as admin_pb
from google.protobuf import duration_pb2
from sqlalchemy import Engine, insert

from fleet_client import portal_schema as t
from fleet_client.cli import Runtime, main
from fleet_client.client import token_fingerprint
from fleet_client.pusher import Outcome
from fleet_server.domain.tokens import TokenKind, mint
from tests.support.client_sync import (
    Portal,
    assert_mirrored,
    central_count,
    central_tables,
    now_clock,
)
from tests.support.clients import Stubs, bearer
from tests.support.inprocess import InProcessServer
from tests.support.process import free_port


def _site(engine: Engine, site_id: int, timezone: str = "Africa/Johannesburg") -> None:
    with engine.begin() as conn:
        conn.execute(insert(t.sites), [{"id": site_id, "name": f"Site {site_id}", "timezone": timezone}])


def _readings(engine: Engine, clock: Any, first: int, count: int) -> None:
    now = clock.now()
    with engine.begin() as conn:
        conn.execute(
            insert(t.measurements),
            [
                {
                    "device_id": 1,
                    "metric": "energy_kwh",
                    "time": now - timedelta(days=2) + timedelta(minutes=15 * i),
                    "value": float(i),
                    "received_at": now - timedelta(minutes=10),
                }
                for i in range(first, first + count)
            ],
        )


def _seconds_until(rig: Any, resource: str) -> float:
    state = rig.state.load(resource)
    assert state.next_attempt is not None
    return float((state.next_attempt - rig.clock.now()).total_seconds())


def test_backoff_grows_while_the_server_is_down_and_resets_when_it_is_back(
    server: InProcessServer, new_customer, make_rig, portal: Portal, engine: Engine
) -> None:
    _site(portal.engine, 1)
    customer = new_customer("FLAKY")
    dead = f"127.0.0.1:{free_port()}"
    rig = make_rig(dead, customer.token, portal.source, rand=1.0)
    waits = []
    for _ in range(4):
        report = rig.pusher.tick()
        assert report.result("sites").outcome is Outcome.FAILED
        assert report.result("devices").outcome is Outcome.SKIPPED
        waits.append(_seconds_until(rig, "sites"))
        rig.clock.advance(waits[-1])
    assert waits == [20, 40, 80, 160]
    assert rig.state.load("sites").failures == 4
    assert (rig.state.load("sites").last_error or "").startswith("UNAVAILABLE")
    rig.counting.redirect = server.target  # the server is back (new channels reach it)
    report = rig.pusher.tick()
    assert report.ok, report.summary()
    sites = rig.state.load("sites")
    assert (sites.failures, sites.next_attempt, sites.last_error) == (0, None, None)
    assert central_tables(engine, customer.id)["sites"] == {
        (1, "Site 1", "", "Africa/Johannesburg", None, None)
    }


def test_invalid_argument_backs_off_with_the_servers_message_and_writes_nothing(
    server: InProcessServer, new_customer, make_rig, portal: Portal, engine: Engine
) -> None:
    _site(portal.engine, 1, timezone="Mars/Olympus_Mons")
    with portal.engine.begin() as conn:
        conn.execute(insert(t.devices), [{"id": 5, "site_id": 1, "name": "Meter"}])
    customer = new_customer("BADTZ")
    rig = make_rig(server.target, customer.token, portal.source, rand=0.5)
    report = rig.pusher.tick()
    assert report.result("sites").outcome is Outcome.FAILED
    assert report.result("devices").outcome is Outcome.SKIPPED
    assert report.result("municipalities").outcome is Outcome.PUSHED
    sites = rig.state.load("sites")
    assert (
        sites.last_error == "INVALID_ARGUMENT: sites[0].timezone: unknown IANA time zone 'Mars/Olympus_Mons'"
    )
    assert _seconds_until(rig, "sites") == 10
    assert central_tables(engine, customer.id)["sites"] == set()
    # Fixed at the source: the next due attempt pushes sites, then the devices it unblocked.
    with portal.engine.begin() as conn:
        conn.execute(t.sites.update().values(timezone="Africa/Johannesburg"))
    rig.clock.advance(10)
    assert rig.pusher.tick().ok
    assert_mirrored(portal.source, engine, customer.id)


def test_failed_precondition_names_both_ids(
    server: InProcessServer, new_customer, make_rig, portal: Portal, engine: Engine
) -> None:
    _site(portal.engine, 1)
    with portal.engine.begin() as conn:  # SQLite does not enforce the portal's foreign keys
        conn.execute(insert(t.devices), [{"id": 5, "site_id": 99, "name": "Orphan"}])
    customer = new_customer("ORPHAN")
    rig = make_rig(server.target, customer.token, portal.source)
    report = rig.pusher.tick()
    assert report.result("sites").outcome is Outcome.PUSHED
    assert report.result("devices").outcome is Outcome.FAILED
    error = rig.state.load("devices").last_error or ""
    assert error.startswith("FAILED_PRECONDITION [SITE_NOT_FOUND]: ")
    assert "99" in error
    assert "5" in error
    assert central_tables(engine, customer.id)["devices"] == set()


def test_a_refused_token_stops_pushing_until_it_changes(
    server: InProcessServer,
    new_customer,
    make_rig,
    portal: Portal,
    engine: Engine,
    caplog: pytest.LogCaptureFixture,
) -> None:
    customer = new_customer("REFUSED")
    _site(portal.engine, 1)
    clock = now_clock()
    _readings(portal.engine, clock, 0, 10)
    unknown = mint(TokenKind.CUSTOMER)
    rig = make_rig(server.target, unknown, portal.source, clock=clock)
    report = rig.pusher.tick()
    assert report.blocked
    assert rig.counting.calls == ["PushSites"]
    block = rig.state.auth_block()
    assert block is not None
    assert block.fingerprint == token_fingerprint(unknown)
    assert block.message.startswith("UNAUTHENTICATED")
    assert unknown not in caplog.text
    clock.advance(3600)
    assert rig.pusher.tick().blocked
    assert rig.counting.calls == ["PushSites"]  # nothing attempted with the refused token
    rig.client.set_token(customer.token)
    report = rig.pusher.tick()
    assert report.ok, report.summary()
    assert rig.state.auth_block() is None
    assert central_count(engine, customer.id) == 10


def test_rotation_while_pushing_loses_no_tick(
    server: InProcessServer,
    stubs: Stubs,
    admin_token: str,
    new_customer,
    make_rig,
    portal: Portal,
    engine: Engine,
) -> None:
    customer = new_customer("ROTATE")
    _site(portal.engine, 1)
    clock = now_clock()
    rig = make_rig(server.target, customer.token, portal.source, clock=clock)
    admin = bearer(admin_token)
    sent = 0

    def tick_with_new_rows() -> Any:
        nonlocal sent
        _readings(portal.engine, clock, sent, 25)
        sent += 25
        clock.advance(20)
        return rig.pusher.tick()

    assert tick_with_new_rows().ok
    # Rotate with the default grace window: the old token keeps working while the portal is updated.
    token2 = stubs.admin.RotateCustomerToken(
        admin_pb.RotateCustomerTokenRequest(code="ROTATE"), metadata=admin, timeout=15
    ).token
    assert tick_with_new_rows().ok
    rig.client.set_token(token2)
    assert tick_with_new_rows().ok
    # An immediate cutover: the token in use is refused, pushing stops until the new one is set.
    token3 = stubs.admin.RotateCustomerToken(
        admin_pb.RotateCustomerTokenRequest(code="ROTATE", grace_period=duration_pb2.Duration(seconds=0)),
        metadata=admin,
        timeout=15,
    ).token
    assert tick_with_new_rows().blocked
    rig.client.set_token(token3)
    report = tick_with_new_rows()
    assert report.ok, report.summary()
    assert report.rows_sent == 50  # the blocked tick's rows and this tick's rows
    assert central_count(engine, customer.id) == sent == 125
    assert_mirrored(portal.source, engine, customer.id)


def test_rows_the_server_refuses_are_quarantined_and_the_rest_arrive(
    server: InProcessServer, new_customer, make_rig, portal: Portal, engine: Engine, tmp_path: Path
) -> None:
    """A reading past the bound used to hold every later reading back, tick after tick."""
    customer = new_customer("GLITCH")
    _site(portal.engine, 1)
    clock = now_clock()
    _readings(portal.engine, clock, 0, 10)
    with portal.engine.begin() as conn:
        conn.execute(t.measurements.update().where(t.measurements.c.value == 4.0).values(value=1e308))
    rig = make_rig(server.target, customer.token, portal.source, clock=clock)

    report = rig.pusher.tick()

    assert report.result("measurements").outcome is Outcome.QUARANTINED
    error = rig.state.load("measurements").last_error or ""
    assert error.startswith("INVALID_ARGUMENT: measurements[4].value: must be finite and within ±1e15")
    assert "[portal row: device_id=1 metric=energy_kwh" in error
    assert central_count(engine, customer.id) == 0
    report = rig.pusher.tick()  # at once: no backoff
    assert report.ok, report.summary()
    assert central_count(engine, customer.id) == 9

    env = {
        "FLEET_INGEST_ENABLED": "true",
        "FLEET_SERVER": server.target,
        "FLEET_TOKEN": customer.token,
        "FLEET_SOURCE_URL": portal.url,
        "FLEET_STATE_URL": str(rig.state.engine.url),
    }
    empty = tmp_path / "empty.env"  # never the working directory's .env
    empty.touch()
    out = io.StringIO()
    assert main(["--env-file", str(empty), "status"], Runtime(env=env, out=out)) == 0
    (line,) = [text for text in out.getvalue().splitlines() if text.startswith("QUARANTINED")]
    assert line.startswith("QUARANTINED: 1 measurement row(s) the server refused are set aside and skipped")
    assert "value 1e+308 (INVALID_ARGUMENT [INVALID_ARGUMENT]: measurements[4].value" in line
    out = io.StringIO()
    main(["--env-file", str(empty), "status", "--json"], Runtime(env=env, out=out))
    quarantine = json.loads(out.getvalue())["quarantine"]
    assert quarantine["count"] == 1
    assert quarantine["newest"][0]["value"] == "1e+308"
    assert quarantine["newest"][0]["reason"] == "INVALID_ARGUMENT"
