"""The fuzzer as part of the suite: a short seeded run against a real server process, and proof
that the run fails when the server answers INTERNAL (a fuzzer that cannot fail proves nothing)."""

from __future__ import annotations

import os

import pytest
from sqlalchemy import text

from fleet_server.db.session import Database
from fleet_server.domain import customers
from tests.fuzz.__main__ import FuzzSettings, fuzz_server_process
from tests.fuzz.harness import Fuzzer, Target
from tests.support.inprocess import InProcessServer

pytestmark = pytest.mark.e2e


def test_a_short_fuzz_run_finds_no_internal_error_crash_or_stray_write(database_url, capsys):
    settings = FuzzSettings.from_env(default_seconds=30.0)
    short = FuzzSettings(float(os.environ.get("FUZZ_SHORT_S") or 30), settings.seed, settings.rss_limit_mb)

    report = fuzz_server_process(database_url, short)

    with capsys.disabled():
        print("\n" + report.table())
    assert report.calls > 100
    assert not report.violations, "\n".join(str(v) for v in report.violations[:10])


def test_the_fuzzer_reports_an_internal_error(make_server, engine, database_url, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(customers, "list_customers", broken)
    server: InProcessServer = make_server()
    db = Database.from_url(database_url, pool_size=1)
    fuzzer = Fuzzer(Target(server.target, engine), db, seed=3, only=["ListCustomers"])
    try:
        fuzzer.provision()
        report = fuzzer.run(3.0)
    finally:
        fuzzer.close()
        db.close()
    assert report.statuses["INTERNAL"] > 0
    assert {v.what for v in report.violations} == {"INTERNAL"}
    assert all(v.method == "ListCustomers" for v in report.violations)


def test_the_database_check_sees_a_write_no_accepted_call_made(make_server, engine, database_url):
    server: InProcessServer = make_server()
    db = Database.from_url(database_url, pool_size=1)
    fuzzer = Fuzzer(Target(server.target, engine), db, seed=5, only=["GetCustomer"])
    try:
        fuzzer.provision()
        assert not fuzzer.run(1.0).violations
        with engine.begin() as conn:  # as if a refused PushSites had written a site
            conn.execute(
                text(
                    "INSERT INTO fleet.sites (customer_id, id, name, address, timezone) "
                    "SELECT id, 1, 'stray', '', 'UTC' FROM fleet.customers WHERE code = 'LIVE'"
                )
            )
        fuzzer.check_database()
    finally:
        fuzzer.close()
        db.close()
    assert [v.what for v in fuzzer.report.violations] == ["database"]
    assert "LIVE: sites [1] != ledger []" in fuzzer.report.violations[0].detail
