"""`fleetctl customers show` against a real `fleet-server` process, data pushed over the wire."""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.support.clients import Stubs
from tests.support.process import ServerProcess, cli
from tests.support.reference_data import device, municipality, push, reference_tariff, site

pytestmark = pytest.mark.e2e


def _fleetctl(server: ServerProcess, admin_token: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [cli("fleetctl"), "--server", server.target, "--admin-token", admin_token, *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_show_renders_tables_and_tariff_cards(fleet_server, new_customer, admin_token):
    acme = new_customer("ACME", "Acme Energy")
    stubs = Stubs.connect(fleet_server.target)
    try:
        push(stubs, acme.token, "sites", [site(1, name="Head office", tariff_id=10)])
        push(stubs, acme.token, "devices", [device(7, 1, name="Main meter")])
        push(stubs, acme.token, "municipalities", [municipality(5, "Phase23 Test City")])
        push(stubs, acme.token, "tariffs", [reference_tariff()])
    finally:
        stubs.close()

    shown = _fleetctl(fleet_server, admin_token, "customers", "show", "ACME")
    assert shown.returncode == 0, shown.stderr
    out = shown.stdout
    assert out.startswith("Customer ACME: Acme Energy")
    assert "Head office" in out
    assert "Main meter" in out
    assert "Tariff 10: Domestic TOU" in out
    assert "Municipality:  Phase23 Test City (id 5)" in out
    lines = [line.split() for line in out.splitlines()]
    assert ["Period", "Days", "Start", "End", "Rate"] in lines
    assert ["Peak", "MTWTF--", "17:00", "20:00", "3.75"] in lines
    assert ["Off-Peak", "-----SS", "00:00", "23:59", "1.20"] in lines
    assert "Sync status (4)" in out

    as_json = _fleetctl(fleet_server, admin_token, "customers", "show", "ACME", "--json")
    assert as_json.returncode == 0, as_json.stderr
    detail = json.loads(as_json.stdout)
    (view,) = detail["tariffs"]
    assert view["municipality_name"] == "Phase23 Test City"
    assert [p["days_of_week"] for p in view["tariff"]["periods"]] == [31, 96]
    assert [s["resource"] for s in detail["sync"]] == ["sites", "devices", "municipalities", "tariffs"]


def test_show_without_tariffs_says_so_and_unknown_codes_fail(fleet_server, new_customer, admin_token):
    new_customer("EMPTY")
    shown = _fleetctl(fleet_server, admin_token, "customers", "show", "EMPTY")
    assert shown.returncode == 0, shown.stderr
    assert "No tariffs synced yet." in shown.stdout

    missing = _fleetctl(fleet_server, admin_token, "customers", "show", "NOPE")
    assert missing.returncode == 1
    assert missing.stderr.startswith("fleetctl: NOT_FOUND")
    assert "NOPE" in missing.stderr


def test_a_large_customer_is_shown_a_page_at_a_time_and_listed_whole(fleet_server, new_customer, admin_token):
    count = 5000
    acme = new_customer("ACME", "Acme Energy")
    stubs = Stubs.connect(fleet_server.target)
    try:
        push(stubs, acme.token, "sites", [site(1, name="Head office")])
        push(stubs, acme.token, "devices", [device(i, 1) for i in range(1, count + 1)], chunk=1000)
    finally:
        stubs.close()

    shown = _fleetctl(fleet_server, admin_token, "customers", "show", "ACME")
    assert shown.returncode == 0, shown.stderr
    assert "Devices (5,000)" in shown.stdout.splitlines()
    assert "… and 4,900 more devices (fleetctl customers devices ACME)" in shown.stdout.splitlines()

    listed = _fleetctl(fleet_server, admin_token, "customers", "devices", "ACME")
    assert listed.returncode == 0, listed.stderr
    assert [int(line.split()[0]) for line in listed.stdout.splitlines()[2:]] == list(range(1, count + 1))

    as_json = _fleetctl(fleet_server, admin_token, "customers", "devices", "ACME", "--json")
    assert as_json.returncode == 0, as_json.stderr
    assert len(json.loads(as_json.stdout)["devices"]) == count

    # A reader that stops early (`| head`) ends the listing quietly: no traceback, status 0.
    connection = ("--server", fleet_server.target, "--admin-token", admin_token)
    head = subprocess.Popen(
        [cli("fleetctl"), *connection, "customers", "devices", "ACME"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert head.stdout is not None
    assert head.stderr is not None
    first = [head.stdout.readline() for _ in range(3)]
    head.stdout.close()
    assert head.wait(timeout=60) == 0
    assert head.stderr.read() == ""
    assert first[2].split()[0] == "1"
