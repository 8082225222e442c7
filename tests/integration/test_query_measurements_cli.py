"""`fleetctl measurements` and `fleetctl fleet summary` against an in-process server."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from fleet_server.fleetctl.main import main as fleetctl
from tests.support.inprocess import InProcessServer
from tests.support.measurements import push, reading, request

T0 = datetime(2025, 9, 1, tzinfo=UTC)
Q = timedelta(minutes=15)


@pytest.fixture
def pushed(stubs, new_customer):
    customer = new_customer("ACME")
    rows = [reading(d, T0 + i * Q, float(i), metric="energy_kwh") for i in range(8) for d in (1, 2)]
    push(stubs, customer.token, [request(1, rows)])
    return customer


def _run(server: InProcessServer, admin_token: str, *argv: str) -> int:
    return fleetctl(["--server", server.target, "--admin-token", admin_token, *argv])


def test_hour_buckets_as_a_table(server, admin_token, pushed, capsys):
    code = _run(
        server, admin_token, "measurements", "ACME", "--metric", "energy_kwh",
        "--from", "2025-09-01", "--to", "2025-09-01T02:00Z", "--device", "2",
    )  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0
    assert out.splitlines() == [
        "ACME · energy_kwh (kWh) · hourly buckets (UTC) · "
        "2025-09-01 00:00Z to 2025-09-01 02:00Z (end excluded)",
        "Device  Hour               Readings  Sum  Min  Max",
        "------  -----------------  --------  ---  ---  ---",
        "id 2    2025-09-01 00:00Z  4         6    0    3",
        "id 2    2025-09-01 01:00Z  4         22   4    7",
    ]


def test_raw_readings_and_json(server, admin_token, pushed, capsys):
    code = _run(
        server, admin_token, "measurements", "ACME", "--metric", "energy_kwh", "--bucket", "raw",
        "--from", "2025-09-01T00:15", "--to", "2025-09-01T00:30", "--json",
    )  # fmt: skip
    points = json.loads(capsys.readouterr().out)["points"]
    assert code == 0
    assert [(p["device_id"], p["bucket_start"], p["sum"]) for p in points] == [
        (1, "2025-09-01T00:15:00Z", 1.0),
        (2, "2025-09-01T00:15:00Z", 1.0),
    ]


def test_day_buckets_as_a_table(server, admin_token, pushed, capsys):
    _run(
        server, admin_token, "measurements", "ACME", "--metric", "energy_kwh", "--bucket", "day",
        "--from", "2025-09-01", "--to", "2025-09-02",
    )  # fmt: skip
    lines = capsys.readouterr().out.splitlines()
    assert lines[3:] == [
        "id 1    2025-09-01  8         28   0    7",
        "id 2    2025-09-01  8         28   0    7",
    ]


def test_fleet_summary(server, admin_token, pushed, new_customer, capsys):
    new_customer("ZULU")
    code = _run(
        server,
        admin_token,
        "fleet",
        "summary",
        "--metric",
        "energy_kwh",
        "--from",
        "2025-09-01",
        "--to",
        "2025-09-02",
    )
    assert code == 0
    assert capsys.readouterr().out.splitlines() == [
        "energy_kwh (kWh) per customer · 2025-09-01 00:00Z to 2025-09-02 00:00Z (end excluded)",
        "Customer  Devices  Reporting  Readings  Sum (kWh)",
        "--------  -------  ---------  --------  ---------",
        "ACME      0        2          16        56",
        "ZULU      0        0          0         0",
        "Devices: devices the customer has pushed; Reporting: devices with readings in the range.",
    ]


def test_server_errors_are_one_readable_line(server, admin_token, pushed, capsys):
    code = _run(
        server,
        admin_token,
        "measurements",
        "NOPE",
        "--metric",
        "energy_kwh",
        "--from",
        "2025-09-01",
        "--to",
        "2025-09-02",
    )
    assert code == 1
    assert "NOT_FOUND: no customer with code NOPE" in capsys.readouterr().err
    code = _run(
        server,
        admin_token,
        "measurements",
        "ACME",
        "--metric",
        "energy_kwh",
        "--from",
        "2025-09-02",
        "--to",
        "2025-09-01",
    )
    assert code == 2  # refused before any call, in the flags' own names
    assert capsys.readouterr().err == (
        "fleetctl: --to (2025-09-01 00:00Z) must be after --from (2025-09-02 00:00Z): "
        "the range is [--from, --to)\n"
    )
