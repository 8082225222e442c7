"""`fleetctl costs` against an in-process server: tables per customer, `--json`, readable errors."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from fleet_server.fleetctl import main as fleetctl
from tests.support.costs import (
    PEAK_OFF_PEAK,
    TariffSpec,
    add_readings,
    add_site,
    add_tariff,
)

START = datetime(2026, 3, 2, tzinfo=UTC)


@pytest.fixture
def fleet(db, server, admin_token, new_customer, cost_partitions):
    acme, beta = new_customer("ACME"), new_customer("BETA")
    cost_partitions.cover(START, START + timedelta(days=7))

    def seed(session):
        add_tariff(session, acme.id, PEAK_OFF_PEAK)
        add_site(session, acme.id, 1, tariff_id=7, devices=[10], name="Depot")
        add_site(session, acme.id, 2, devices=[20], name="Shed")
        add_readings(
            session, acme.id, 10, [(START + timedelta(hours=17), 2.0), (START + timedelta(hours=12), 1.0)]
        )
        add_readings(session, acme.id, 20, [(START, 0.5)])
        add_tariff(session, beta.id, TariffSpec(id=1, default_rate="0.30", currency="EUR"))
        add_site(session, beta.id, 1, tariff_id=1, devices=[1], name="Plant")
        add_readings(session, beta.id, 1, [(START, 10.0)])

    db.transaction(seed)
    return ["--server", server.target, "--admin-token", admin_token]


def run(capsys: pytest.CaptureFixture[str], argv: list[str]) -> tuple[int, str, str]:
    code = fleetctl.main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_table_per_customer_with_period_lines_and_totals(capsys, fleet):
    code, out, _ = run(capsys, [*fleet, "costs", "--from", "2026-03-02", "--to", "2026-03-09"])
    assert code == 0
    acme, beta = out.split("\n\nBETA")
    assert acme.startswith("ACME · energy costs · 2026-03-02 00:00Z to 2026-03-09 00:00Z (end excluded)\n")
    rows = [line.split() for line in acme.splitlines()]
    assert ["1", "Depot", "Peak/Off-Peak", "(id", "7)", "Peak", "2.000000", "4.50", "9.00"] in rows
    assert ["default", "1.000000", "2.00", "2.00"] in rows  # continuation line of site 1
    assert ["2", "Shed", "-", "-"] in rows
    assert ["1", "Depot", "ZAR", "3.000000", "11.00", "70.00", "12.15", "93.15", "0.000000"] in rows
    assert ["2", "Shed", "-", "0.000000", "0.00", "0.00", "0.00", "0.00", "0.500000"] in rows
    assert acme.rstrip().endswith("Total: ZAR 93.15")
    assert beta.rstrip().endswith("Total: EUR 3.00")


def test_customer_filter_and_json(capsys, fleet):
    argv = [
        *fleet,
        "costs",
        "--customer",
        "BETA",
        "--from",
        "2026-03-02T00:00Z",
        "--to",
        "2026-03-09",
        "--json",
    ]
    code, out, _ = run(capsys, argv)
    assert code == 0
    (beta,) = json.loads(out)["customers"]
    assert beta["code"] == "BETA"
    assert beta["totals"] == [{"currency": "EUR", "total": "3.00"}]
    assert beta["sites"][0]["periods"] == [
        {"period_id": 0, "period_name": "default", "kwh": "10.000000", "rate": "0.30", "cost": "3.00"}
    ]


def test_server_errors_are_one_readable_line(capsys, fleet):
    code, _, err = run(
        capsys, [*fleet, "costs", "--customer", "NOPE", "--from", "2026-03-02", "--to", "2026-03-09"]
    )
    assert code == 1
    assert err.strip() == "fleetctl: NOT_FOUND: no customer with code NOPE"
    code, _, err = run(capsys, [*fleet, "costs", "--from", "2026-03-09", "--to", "2026-03-02"])
    assert (code, err.strip()) == (
        2,
        "fleetctl: --to (2026-03-02 00:00Z) must be after --from (2026-03-09 00:00Z): "
        "the range is [--from, --to)",
    )


def test_a_bad_timestamp_is_a_usage_error(capsys, fleet):
    with pytest.raises(SystemExit) as exited:
        fleetctl.main([*fleet, "costs", "--from", "yesterday", "--to", "2026-03-09"])
    assert exited.value.code == 2
    assert "'yesterday' is not a timestamp" in capsys.readouterr().err
