"""GetFleetHealth and ListSilentDevices through the wire, judged at the edges of their windows with the
injected clock."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from fleet.v1 import admin_service_pb2 as apb
from fleet.v1 import query_service_pb2 as qpb
from google.protobuf import duration_pb2
from sqlalchemy import text

from fleet_server.clock import FakeClock
from tests.support.clients import Stubs, bearer, rejected
from tests.support.measurements import push as push_batches
from tests.support.measurements import reading, request
from tests.support.reference_data import device, push, site

NOW = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
US = timedelta(microseconds=1)


@pytest.fixture
def clock():
    return FakeClock(NOW)


@pytest.fixture
def stubs(make_server, clock):
    client = Stubs.connect(make_server(clock=clock).target)
    yield client
    client.close()


def duration(value: timedelta) -> duration_pb2.Duration:
    message = duration_pb2.Duration()
    message.FromTimedelta(value)
    return message


def health(stubs, admin_token, **fields) -> qpb.GetFleetHealthResponse:
    for name in ("silent_after", "stale_after"):
        if isinstance(fields.get(name), timedelta):
            fields[name] = duration(fields[name])
    reply: qpb.GetFleetHealthResponse = stubs.query.GetFleetHealth(
        qpb.GetFleetHealthRequest(**fields), metadata=bearer(admin_token), timeout=10
    )
    return reply


def one(stubs, admin_token, code, **fields) -> qpb.CustomerHealth:
    (customer,) = health(stubs, admin_token, code=code, **fields).customers
    return customer


def problems(customer: qpb.CustomerHealth) -> set[str]:
    return {qpb.HealthProblem.Name(p) for p in customer.problems}


def created_at(engine, code: str, when: datetime) -> None:
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE fleet.customers SET created_at = :w WHERE code = :c"), {"w": when, "c": code}
        )


@pytest.fixture
def acme(stubs, new_customer, engine):
    """Three devices: 1 read at NOW-1h (two metrics in one hour), 2 at NOW-7h, 3 never."""
    customer = new_customer("ACME")
    created_at(engine, "ACME", NOW - timedelta(days=30))
    push(stubs, customer.token, "sites", [site(1)])
    push(stubs, customer.token, "devices", [device(1, 1), device(2, 1), device(3, 1)])
    batch = [
        reading(1, NOW - timedelta(hours=1, minutes=40), 1.0),
        reading(1, NOW - timedelta(hours=1), 2.0, metric="power_w"),
        reading(1, NOW - timedelta(hours=1, minutes=30), 3.0),
        reading(2, NOW - timedelta(hours=7), 4.0),
        reading(2, NOW - timedelta(days=3), 5.0),
    ]
    push_batches(stubs, customer.token, [request(1, batch)])
    return customer


def test_a_device_is_silent_only_after_longer_than_silent_after(stubs, admin_token, acme, clock):
    customer = one(stubs, admin_token, "ACME", silent_after=timedelta(hours=1))
    # Device 1's newest reading is exactly one hour old: not silent yet.
    assert customer.device_count == 3
    assert [d.device_id for d in customer.silent_devices] == [2, 3]
    assert customer.newest_reading_at.ToDatetime(tzinfo=UTC) == NOW - timedelta(hours=1)
    assert customer.reading_lag.ToTimedelta() == timedelta(hours=1)

    clock.advance(US)
    customer = one(stubs, admin_token, "ACME", silent_after=timedelta(hours=1))
    assert customer.silent_device_count == 3
    assert [d.device_id for d in customer.silent_devices] == [1, 2, 3]
    by_id = {d.device_id: d for d in customer.silent_devices}
    assert by_id[1].last_reading_at.ToDatetime(tzinfo=UTC) == NOW - timedelta(hours=1)
    assert by_id[2].last_reading_at.ToDatetime(tzinfo=UTC) == NOW - timedelta(hours=7)
    assert not by_id[3].HasField("last_reading_at")
    assert by_id[1].name == "Meter 1"


def test_the_default_window_is_six_hours(stubs, admin_token, acme, clock):
    reply = health(stubs, admin_token, code="ACME")
    assert reply.silent_after.ToTimedelta() == timedelta(hours=6)
    assert reply.stale_after.ToTimedelta() == timedelta(hours=1)
    (customer,) = reply.customers
    assert [d.device_id for d in customer.silent_devices] == [2, 3]
    assert problems(customer) == {"HEALTH_PROBLEM_SILENT_DEVICES"}


def test_stale_after_no_push_for_longer_than_stale_after(stubs, admin_token, acme, clock):
    assert "HEALTH_PROBLEM_STALE" not in problems(one(stubs, admin_token, "ACME"))
    clock.advance(timedelta(hours=1))
    assert "HEALTH_PROBLEM_STALE" not in problems(one(stubs, admin_token, "ACME"))
    clock.advance(US)
    customer = one(stubs, admin_token, "ACME")
    assert "HEALTH_PROBLEM_STALE" in problems(customer)
    assert customer.last_push_at.ToDatetime(tzinfo=UTC) == NOW
    assert {s.resource for s in customer.sync} == {"sites", "devices", "measurements"}


def test_a_customer_that_never_pushed_is_stale_once_it_is_old_enough(
    stubs, admin_token, new_customer, engine
):
    new_customer("NEW")
    created_at(engine, "NEW", NOW - timedelta(hours=1))
    assert problems(one(stubs, admin_token, "NEW")) == set()
    created_at(engine, "NEW", NOW - timedelta(hours=1) - US)
    customer = one(stubs, admin_token, "NEW")
    assert problems(customer) == {"HEALTH_PROBLEM_STALE"}
    assert not customer.HasField("last_push_at")
    assert not customer.HasField("newest_reading_at")
    assert customer.device_count == 0


def _rotate(stubs, admin_token, code: str, grace: timedelta) -> str:
    reply = stubs.admin.RotateCustomerToken(
        apb.RotateCustomerTokenRequest(code=code, grace_period=duration(grace)), metadata=bearer(admin_token)
    )
    return str(reply.token)


def test_token_expiring_when_the_old_token_is_used_within_a_day_of_expiry(
    stubs, admin_token, acme, clock, engine
):
    _rotate(stubs, admin_token, "ACME", timedelta(days=3))
    customer = one(stubs, admin_token, "ACME")
    assert customer.token.previous_expires_at.ToDatetime(tzinfo=UTC) == NOW + timedelta(days=3)
    assert not customer.token.HasField("previous_last_used_at")
    assert not customer.token.previous_used_recently

    push(stubs, acme.token, "sites", [site(1)])  # the old token, still in its window
    customer = one(stubs, admin_token, "ACME")
    assert customer.token.previous_used_recently
    assert customer.token.previous_last_used_at.ToDatetime(tzinfo=UTC) == NOW
    assert "HEALTH_PROBLEM_TOKEN_EXPIRING" not in problems(customer)  # three days left

    clock.advance(timedelta(days=2))  # a day left; last used two days ago
    assert "HEALTH_PROBLEM_TOKEN_EXPIRING" not in problems(one(stubs, admin_token, "ACME"))
    push(stubs, acme.token, "sites", [site(1)])
    customer = one(stubs, admin_token, "ACME")
    assert "HEALTH_PROBLEM_TOKEN_EXPIRING" in problems(customer)

    clock.advance(timedelta(hours=1))  # not used for exactly an hour: still counts
    assert "HEALTH_PROBLEM_TOKEN_EXPIRING" in problems(one(stubs, admin_token, "ACME"))
    clock.advance(US)
    customer = one(stubs, admin_token, "ACME")
    assert not customer.token.previous_used_recently
    assert "HEALTH_PROBLEM_TOKEN_EXPIRING" not in problems(customer)


def test_the_old_tokens_last_use_is_written_at_most_every_five_minutes(
    stubs, admin_token, acme, clock, engine
):
    _rotate(stubs, admin_token, "ACME", timedelta(days=1))

    def stored() -> datetime | None:
        with engine.connect() as conn:
            value: datetime | None = conn.scalar(
                text("SELECT previous_token_last_used_at FROM fleet.customers WHERE code = 'ACME'")
            )
            return value

    push(stubs, acme.token, "sites", [site(1)])
    assert stored() == NOW
    clock.advance(timedelta(minutes=5))
    push(stubs, acme.token, "sites", [site(1)])
    assert stored() == NOW  # moved by exactly the step: not written
    clock.advance(US)
    push(stubs, acme.token, "sites", [site(1)])
    assert stored() == NOW + timedelta(minutes=5) + US
    _rotate(stubs, admin_token, "ACME", timedelta(days=1))
    assert stored() is None  # a new old token: not used yet


def test_an_inactive_customer_has_no_problems(stubs, admin_token, acme, clock):
    stubs.admin.DeactivateCustomer(apb.DeactivateCustomerRequest(code="ACME"), metadata=bearer(admin_token))
    clock.advance(timedelta(days=1))
    customer = one(stubs, admin_token, "ACME")
    assert not customer.is_active
    assert list(customer.problems) == []
    assert customer.silent_device_count == 3


def test_customers_and_silent_devices_are_paged(stubs, admin_token, acme, new_customer, engine):
    new_customer("BETA")
    first = health(stubs, admin_token, page_size=1)
    assert [c.code for c in first.customers] == ["ACME"]
    assert first.next_page_token
    second = health(stubs, admin_token, page_size=1, page_token=first.next_page_token)
    assert [c.code for c in second.customers] == ["BETA"]
    assert not second.next_page_token

    listed: list[int] = []
    page_token = ""
    while True:
        reply = stubs.query.ListSilentDevices(
            qpb.ListSilentDevicesRequest(code="ACME", page_size=1, page_token=page_token),
            metadata=bearer(admin_token),
        )
        assert reply.total_size == 2
        listed.extend(d.device_id for d in reply.devices)
        page_token = reply.next_page_token
        if not page_token:
            break
    assert listed == [2, 3]


def test_the_first_silent_devices_continue_with_list_silent_devices(stubs, admin_token, new_customer, engine):
    many = new_customer("MANY")
    push(stubs, many.token, "sites", [site(1)])
    push(stubs, many.token, "devices", [device(i, 1) for i in range(1, 26)])
    customer = one(stubs, admin_token, "MANY")
    assert customer.silent_device_count == 25
    assert [d.device_id for d in customer.silent_devices] == list(range(1, 11))
    rest = stubs.query.ListSilentDevices(
        qpb.ListSilentDevicesRequest(code="MANY", page_token=customer.next_silent_devices_page_token),
        metadata=bearer(admin_token),
    )
    assert [d.device_id for d in rest.devices] == list(range(11, 26))
    assert not rest.next_page_token


@pytest.mark.parametrize(
    ("fields", "code", "field"),
    [
        ({"silent_after": timedelta(0)}, grpc.StatusCode.INVALID_ARGUMENT, "silent_after"),
        ({"stale_after": timedelta(seconds=-1)}, grpc.StatusCode.INVALID_ARGUMENT, "stale_after"),
        ({"silent_after": timedelta(days=91)}, grpc.StatusCode.INVALID_ARGUMENT, "silent_after"),
        ({"page_size": -1}, grpc.StatusCode.INVALID_ARGUMENT, "page_size"),
        ({"page_token": "nonsense"}, grpc.StatusCode.INVALID_ARGUMENT, "page_token"),
        ({"code": "NOPE"}, grpc.StatusCode.NOT_FOUND, ""),
    ],
)
def test_bad_requests_are_refused_naming_the_field(stubs, admin_token, fields, code, field):
    error = rejected(lambda: health(stubs, admin_token, **fields))
    assert error.code() is code
    assert field in error.details()


@pytest.fixture
def server(make_server, clock):
    return make_server(clock=clock)


def fleetctl_run(target: str, admin_token: str, *argv: str) -> int:
    from fleet_server.fleetctl.main import main as fleetctl

    return fleetctl(["--server", target, "--admin-token", admin_token, *argv])


def test_fleetctl_fleet_health_gives_a_verdict_per_customer_and_fails_when_any_is_bad(
    make_server, clock, admin_token, new_customer, engine, capsys
):
    server = make_server(clock=clock)
    client = Stubs.connect(server.target)
    good = new_customer("GOOD")
    created_at(engine, "GOOD", NOW - timedelta(days=1))
    push(client, good.token, "sites", [site(1)])
    push(client, good.token, "devices", [device(1, 1)])
    push_batches(client, good.token, [request(1, [reading(1, NOW - timedelta(minutes=3), 1.0)])])
    new_customer("QUIET")
    created_at(engine, "QUIET", NOW - timedelta(days=2))
    client.admin.DeactivateCustomer(apb.DeactivateCustomerRequest(code="QUIET"), metadata=bearer(admin_token))

    assert fleetctl_run(server.target, admin_token, "fleet", "health") == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:3] == ["CUSTOMER", "VERDICT", "LAST"]
    assert lines[2].split()[:5] == ["GOOD", "OK", "0s", "ago", "3m"]
    assert lines[3].split()[:2] == ["QUIET", "INACTIVE"]
    assert lines[-1] == "2 customers: 1 OK, 1 inactive, 0 not OK"

    late = new_customer("LATE")
    created_at(engine, "LATE", NOW - timedelta(days=2))
    push(client, late.token, "sites", [site(1)])
    push(client, late.token, "devices", [device(i, 1, name=f"Meter {i}") for i in range(1, 8)])
    clock.advance(timedelta(hours=7))
    assert fleetctl_run(server.target, admin_token, "fleet", "health", "--stale-after", "8h") == 1
    out = capsys.readouterr().out
    late_line = next(line for line in out.splitlines() if line.startswith("LATE"))
    assert "SILENT DEVICES" in late_line
    assert "STALE" not in late_line
    assert "  7 of 7 devices silent for over 6h00m: 1 Meter 1 (never reported)" in out
    assert "and 2 more" in out
    assert "  all of them: fleetctl fleet silent-devices LATE" in out
    assert next(line for line in out.splitlines() if line.startswith("GOOD")).split()[1:3] == [
        "SILENT",
        "DEVICES",
    ]

    assert (
        fleetctl_run(
            server.target,
            admin_token,
            "fleet",
            "health",
            "--customer",
            "LATE",
            "--stale-after",
            "8h",
            "--json",
        )
        == 1
    )
    document = json.loads(capsys.readouterr().out)
    assert [c["code"] for c in document["customers"]] == ["LATE"]
    assert document["customers"][0]["verdict"] == "SILENT DEVICES"
    assert document["not_ok"] == 1

    assert fleetctl_run(server.target, admin_token, "fleet", "silent-devices", "LATE") == 1
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines[2:]] == [str(i) for i in range(1, 8)]
    client.close()


def test_fleetctl_fleet_health_explains_stale_and_expiring_tokens(
    make_server, clock, admin_token, new_customer, engine, capsys
):
    server = make_server(clock=clock)
    client = Stubs.connect(server.target)
    acme = new_customer("ACME")
    created_at(engine, "ACME", NOW - timedelta(days=2))
    push(client, acme.token, "sites", [site(1)])
    _rotate(client, admin_token, "ACME", timedelta(hours=20))
    push(client, acme.token, "sites", [site(1)])  # the old token
    clock.advance(timedelta(hours=2))
    assert fleetctl_run(server.target, admin_token, "fleet", "health") == 1
    out = capsys.readouterr().out
    assert "STALE" in out
    assert "  no push for 2h00m (stale after 1h00m); last pushes: sites 2026-01-05 12:00:00Z" in out
    assert "TOKEN EXPIRING" not in out  # used two hours ago

    push(client, acme.token, "sites", [site(1)])
    assert fleetctl_run(server.target, admin_token, "fleet", "health") == 1
    out = capsys.readouterr().out
    assert "TOKEN EXPIRING" in out
    assert (
        "  the old token was used 0s ago and stops working in 18h00m (2026-01-06 08:00:00Z): "
        "the portal must switch to its new FLEET_TOKEN"
    ) in out
    client.close()


def test_span_reads_as_people_say_it():
    from fleet_server.fleetctl.health import span

    assert [span(timedelta(seconds=s)) for s in (0, 59, 60, 3599, 3600, 3 * 3600 + 300, 49 * 3600)] == [
        "0s",
        "59s",
        "1m",
        "59m",
        "1h00m",
        "3h05m",
        "2d1h",
    ]
