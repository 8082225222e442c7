"""`fleetctl customers show` of a large customer, and `customers sites|devices|municipalities|tariffs`."""

from __future__ import annotations

import json

import pytest

from fleet_server.fleetctl.main import main as fleetctl
from tests.support.inprocess import InProcessServer
from tests.support.reference_data import device, municipality, push, reference_tariff, renumbered_tariff, site

DEVICES = 2500


def _run(server: InProcessServer, admin_token: str, *argv: str) -> int:
    return fleetctl(["--server", server.target, "--admin-token", admin_token, *argv])


@pytest.fixture
def large(stubs, new_customer):
    """ACME with 2 sites and 2,500 devices (more than two of fleetctl's 1,000-row pages)."""
    acme = new_customer("ACME")
    push(stubs, acme.token, "sites", [site(1, name="Head office"), site(2)])
    push(stubs, acme.token, "devices", [device(i, 1 + i % 2) for i in range(1, DEVICES + 1)], chunk=1000)
    return acme


def test_show_prints_the_first_page_and_how_many_more_there_are(server, admin_token, large, capsys):
    assert _run(server, admin_token, "customers", "show", "ACME") == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert "Sites (2)" in lines
    assert "Devices (2,500)" in lines
    assert "… and 2,400 more devices (fleetctl customers devices ACME)" in lines
    assert "more sites" not in out
    shown = [line.split()[0] for line in lines[lines.index("Devices (2,500)") + 3 :][:100]]
    assert shown == [str(i) for i in range(1, 101)]
    assert (
        lines[lines.index("Devices (2,500)") + 103]
        == "… and 2,400 more devices (fleetctl customers devices ACME)"
    )


def test_devices_lists_every_device_once_in_id_order(server, admin_token, large, capsys):
    assert _run(server, admin_token, "customers", "devices", "ACME") == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["ID", "Site", "Name", "Serial", "Kind"]
    assert set(lines[1]) == {"-", " "}
    assert [int(line.split()[0]) for line in lines[2:]] == list(range(1, DEVICES + 1))
    assert lines[2].split() == ["1", "Site", "2", "(id", "2)", "Meter", "1", "SN-1", "meter"]
    assert lines[3].split()[1:4] == ["Head", "office", "(id"]  # the site by name, read before the rows


def test_devices_as_json_is_one_document_with_every_device(server, admin_token, large, capsys):
    assert _run(server, admin_token, "customers", "devices", "ACME", "--json") == 0
    devices = json.loads(capsys.readouterr().out)["devices"]
    assert [int(d["id"]) for d in devices] == list(range(1, DEVICES + 1))
    assert devices[0] == {
        "id": 1,
        "site_id": 2,
        "name": "Meter 1",
        "serial_number": "SN-1",
        "kind": "meter",
    }


def test_sites_municipalities_and_tariffs(server, stubs, admin_token, large, capsys):
    push(stubs, large.token, "municipalities", [municipality(5, "Phase23 Test City")])
    push(stubs, large.token, "tariffs", [reference_tariff(), renumbered_tariff(11)])

    assert _run(server, admin_token, "customers", "sites", "ACME") == 0
    sites = capsys.readouterr().out.splitlines()
    assert [line.split()[:3] for line in sites[2:]] == [["1", "Head", "office"], ["2", "Site", "2"]]

    assert _run(server, admin_token, "customers", "municipalities", "ACME", "--json") == 0
    assert json.loads(capsys.readouterr().out) == {
        "municipalities": [{"id": 5, "name": "Phase23 Test City", "region": "Gauteng"}]
    }

    assert _run(server, admin_token, "customers", "tariffs", "ACME") == 0
    cards = capsys.readouterr().out
    assert cards.startswith("Tariff 10: Domestic TOU\n")
    assert "\n\nTariff 11: Domestic TOU\n" in cards
    assert cards.count("Municipality:  Phase23 Test City (id 5)") == 2


def test_an_empty_list_says_so(server, admin_token, new_customer, capsys):
    new_customer("EMPTY")
    for noun in ("sites", "devices", "municipalities", "tariffs"):
        assert _run(server, admin_token, "customers", noun, "EMPTY") == 0
        assert capsys.readouterr().out == f"No {noun} synced yet.\n"
    assert _run(server, admin_token, "customers", "devices", "EMPTY", "--json") == 0
    assert json.loads(capsys.readouterr().out) == {"devices": []}


def test_an_unknown_customer_fails_with_the_servers_message(server, admin_token, capsys):
    assert _run(server, admin_token, "customers", "devices", "NOPE") == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == "fleetctl: NOT_FOUND: no customer with code NOPE\n"
