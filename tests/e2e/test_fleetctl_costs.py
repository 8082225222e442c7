"""The installed `fleetctl costs` against a real `fleet-server` process."""

from __future__ import annotations

import json
import os
import subprocess
from datetime import UTC, datetime, timedelta

import pytest

from fleet_server.db.session import Database
from tests.support.costs import PEAK_OFF_PEAK, Partitions, add_readings, add_site, add_tariff
from tests.support.process import ServerProcess, cli

pytestmark = pytest.mark.e2e

MONDAY = datetime(2026, 3, 2, tzinfo=UTC)


@pytest.fixture
def seeded(db: Database, new_customer, cost_partitions: Partitions) -> None:
    cost_partitions.cover(MONDAY, MONDAY + timedelta(days=7))
    acme = new_customer("ACME")

    def seed(session):
        add_tariff(session, acme.id, PEAK_OFF_PEAK)
        add_site(session, acme.id, 1, tariff_id=7, devices=[10], name="Depot")
        add_readings(session, acme.id, 10, [(MONDAY + timedelta(hours=17), 2.0)])

    db.transaction(seed)


def fleetctl(server: ServerProcess, token: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLEET_")}
    return subprocess.run(
        [cli("fleetctl"), "--server", server.target, "--admin-token", token, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_costs_table_and_json_from_the_installed_command(
    fleet_server: ServerProcess, admin_token: str, seeded: None
) -> None:
    window = ("--from", "2026-03-02", "--to", "2026-03-09")
    shown = fleetctl(fleet_server, admin_token, "costs", *window)
    assert shown.returncode == 0, shown.stderr
    assert ["1", "Depot", "Peak/Off-Peak", "(id", "7)", "Peak", "2.000000", "4.50", "9.00"] in [
        line.split() for line in shown.stdout.splitlines()
    ]
    assert shown.stdout.rstrip().endswith("Total: ZAR 90.85")  # (9.00 + 70.00) * 1.15

    as_json = fleetctl(fleet_server, admin_token, "--json", "costs", "--customer", "ACME", *window)
    assert as_json.returncode == 0, as_json.stderr
    (acme,) = json.loads(as_json.stdout)["customers"]
    assert acme["totals"] == [{"currency": "ZAR", "total": "90.85"}]

    missing = fleetctl(fleet_server, admin_token, "costs", "--customer", "NOPE", *window)
    assert missing.returncode == 1
    assert missing.stderr.strip() == "fleetctl: NOT_FOUND: no customer with code NOPE"
