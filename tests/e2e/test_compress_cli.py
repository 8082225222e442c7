"""`fleet-server compress` as a real process: what it prints, how it refuses, and kill -9 mid-run."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from datetime import UTC, datetime

import pytest
from sqlalchemy import Engine, text

from fleet_server.db.session import Database
from tests.support.cold import all_readings, fingerprint, hot_readings, series, units, write
from tests.support.process import cli, settle_backends

pytestmark = pytest.mark.e2e

START = datetime(2025, 3, 1, tzinfo=UTC)  # long settled, whatever day the tests run on


def _compress(database_url: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "FLEET_DATABASE_URL": database_url}
    return subprocess.run(
        [cli("fleet-server"), "compress", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _unit_count(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.scalar(text("SELECT count(*) FROM fleet.measurements_compressed")))


def test_compress_prints_what_it_did(db: Database, engine: Engine, new_customer, database_url) -> None:
    customer = new_customer("ACME")
    other = new_customer("OTHER")
    write(db, customer.id, series(2, START, 40))
    write(db, other.id, series(1, START, 3))

    dry = _compress(database_url, "--dry-run", "--customer", "ACME")
    assert dry.returncode == 0, dry.stderr
    assert "would compress 4 units: 7,680 readings" in dry.stdout
    assert "dry run: nothing was written" in dry.stdout
    assert units(engine, customer.id) == []

    done = _compress(database_url, "--older-than", "7d", "--customer", "ACME")
    assert done.returncode == 0, done.stderr
    line = done.stdout.splitlines()[0]
    assert line.startswith("compressed 4 units: 7,680 readings, ")
    assert " -> " in line
    assert "readings/s" in line
    assert hot_readings(engine, customer.id) == []
    assert len(hot_readings(engine, other.id)) == 3 * 96  # only the customer asked for

    rest = _compress(database_url)
    assert rest.returncode == 0, rest.stderr
    assert rest.stdout.startswith("compressed 1 units: 288 readings")


def test_compress_refuses_bad_input_clearly(db: Database, engine: Engine, new_customer, database_url) -> None:
    customer = new_customer("ACME")
    write(db, customer.id, series(1, START, 2))

    unknown = _compress(database_url, "--customer", "NOPE")
    lower = _compress(database_url, "--customer", "acme")
    bad = _compress(database_url, "--older-than", "a week")

    assert unknown.returncode == 2
    assert "fleet-server: no customer with code NOPE" in unknown.stderr
    assert lower.returncode == 2
    assert "(did you mean ACME?)" in lower.stderr
    assert bad.returncode == 2
    assert "--older-than: 'a week' is not a duration" in bad.stderr
    assert "Traceback" not in unknown.stderr + lower.stderr + bad.stderr
    assert len(hot_readings(engine, customer.id)) == 2 * 96  # none wrote anything
    assert units(engine, customer.id) == []


def test_kill_9_mid_run_loses_and_doubles_nothing(
    db: Database, engine: Engine, new_customer, database_url
) -> None:
    customer = new_customer("ACME")
    write(db, customer.id, series(12, START, 150))  # 172,800 readings, 60 units
    before = fingerprint(all_readings(engine, customer.id))
    assert before[2] == 1
    rng = random.Random(9)
    env = {**os.environ, "FLEET_DATABASE_URL": database_url}
    kills = 0
    for _ in range(4):
        proc = subprocess.Popen(
            [cli("fleet-server"), "compress"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        seen = _unit_count(engine)
        deadline = time.monotonic() + 120
        while proc.poll() is None and _unit_count(engine) == seen and time.monotonic() < deadline:
            time.sleep(0.02)  # until the run is writing units
        time.sleep(rng.uniform(0, 0.5))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait(30)
        # Its backend may still commit the unit it was writing: read once it is gone (hot and
        # cold are read by two statements, and a commit between them would count a unit twice).
        settle_backends(database_url, proc.pid)
        assert fingerprint(all_readings(engine, customer.id)) == before
    assert kills >= 2  # the data is large enough for most runs to die mid-way

    final = _compress(database_url)
    assert final.returncode == 0, final.stderr
    assert hot_readings(engine, customer.id) == []
    assert fingerprint(all_readings(engine, customer.id)) == before
    assert _unit_count(engine) == 12 * 5  # March to July 2025
