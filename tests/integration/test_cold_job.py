"""The server's background compression: runs on its interval, one process of a fleet at a time."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from sqlalchemy import Engine, create_engine, text

from fleet_server.clock import FakeClock
from fleet_server.config import Settings
from fleet_server.db.session import Database
from fleet_server.server import ConfigurationError, check_settings
from fleet_server.store.locks import LockSpace
from tests.support.cold import hot_readings, series, units, write

NOW = datetime(2026, 3, 20, 12, tzinfo=UTC)
START = datetime(2026, 1, 10, tzinfo=UTC)


def _wait(condition: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def _sample(server, name: str, **labels: str) -> float:
    registry = server.app.metrics.registry
    return registry.get_sample_value(name, labels) or 0.0


def test_the_server_compresses_in_the_background(
    db: Database, engine: Engine, new_customer, make_server, caplog
) -> None:
    caplog.set_level(logging.INFO, logger="fleet_server.domain.compression")
    customer = new_customer("ACME")
    write(db, customer.id, series(2, START, 30))
    server = make_server(
        clock=FakeClock(NOW), compress_interval_s=0.2, compress_after="7d", metrics_listen="127.0.0.1:0"
    )
    _wait(lambda: hot_readings(engine, customer.id) == [])
    _wait(lambda: _sample(server, "fleet_compress_runs_total", outcome="ok") >= 1)
    assert len(units(engine, customer.id)) == 4
    assert _sample(server, "fleet_compress_readings_total") == 2 * 30 * 96
    assert _sample(server, "fleet_compress_units_total") == 4
    assert _sample(server, "fleet_compress_bytes_after_total") > 0
    assert "compression run finished: compressed 4 units: 5,760 readings" in caplog.text


def test_one_process_of_a_fleet_runs_it(
    db: Database, engine: Engine, new_customer, make_server, database_url, caplog
) -> None:
    caplog.set_level(logging.INFO, logger="fleet_server.domain.compression")
    customer = new_customer("ACME")
    write(db, customer.id, series(1, START, 10))
    other_process = create_engine(database_url, pool_size=1)
    with other_process.connect() as holder:  # another process of the fleet is running the job
        assert holder.scalar(
            text("SELECT pg_try_advisory_lock(:space, 0)"), {"space": int(LockSpace.COMPRESS_JOB)}
        )
        server = make_server(clock=FakeClock(NOW), compress_interval_s=0.1)
        _wait(lambda: caplog.text.count("skipping this round") >= 3)
        assert len(hot_readings(engine, customer.id)) == 10 * 96
        holder.execute(text("SELECT pg_advisory_unlock(:space, 0)"), {"space": int(LockSpace.COMPRESS_JOB)})
        _wait(lambda: hot_readings(engine, customer.id) == [])
    other_process.dispose()
    assert server.running is not None
    assert server.running.compression is not None
    assert server.running.compression.rounds >= 1


def test_no_compress_turns_it_off(db: Database, engine: Engine, new_customer, make_server) -> None:
    customer = new_customer("ACME")
    write(db, customer.id, series(1, START, 3))
    server = make_server(clock=FakeClock(NOW), compress=False, compress_interval_s=0.05)
    time.sleep(0.5)
    assert server.running is not None
    assert server.running.compression is None
    assert len(hot_readings(engine, customer.id)) == 3 * 96


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"compress_after": "soon"}, "--compress-after: 'soon' is not a duration"),
        ({"compress_interval_s": 0.0}, "--compress-interval-s must be positive"),
    ],
)
def test_bad_compression_settings_are_refused(overrides, message) -> None:
    with pytest.raises(ConfigurationError, match=message):
        check_settings(Settings(**overrides))
