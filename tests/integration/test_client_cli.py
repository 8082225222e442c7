"""`fleet-push` commands in-process against the real server: opt-in, once, status, locks, settings,
and a portal (and its push state) living in PostgreSQL instead of SQLite."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from fleet_client.cli import OFF_MESSAGE, Runtime, main
from fleet_client.demo import create_demo_portal
from fleet_client.source import SqlSource
from fleet_client.state import PushState
from fleet_server.domain.tokens import TokenKind, mint
from tests.support.client_sync import (
    Counting,
    CountingInterceptor,
    assert_mirrored,
    central_count,
    now_clock,
)
from tests.support.database import create_scratch_database, drop_database
from tests.support.inprocess import InProcessServer


@pytest.fixture
def demo(tmp_path: Path) -> Any:
    return create_demo_portal(tmp_path / "demo.db", days=1)


def _env(
    server: InProcessServer, token: str, source_url: str, tmp_path: Path, **extra: str
) -> dict[str, str]:
    return {
        "FLEET_INGEST_ENABLED": "true",
        "FLEET_SERVER": server.target,
        "FLEET_TOKEN": token,
        "FLEET_SOURCE_URL": source_url,
        "FLEET_STATE_URL": f"sqlite:///{tmp_path / 'state' / 'push.db'}",
        **extra,
    }


def _run(argv: list[str], env: dict[str, str], tmp_path: Path, **runtime: Any) -> tuple[int, str]:
    out = io.StringIO()
    empty = tmp_path / "empty.env"  # never the working directory's .env
    empty.touch()
    code = main(["--env-file", str(empty), *argv], Runtime(env=env, out=out, **runtime))
    return code, out.getvalue()


@pytest.mark.parametrize("switch", ["false", "", "no", "off"])
def test_opt_in_off_opens_no_connection_and_says_so_once(
    switch: str,
    server: InProcessServer,
    new_customer,
    demo: Any,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    customer = new_customer("OFF")
    counting = Counting(CountingInterceptor())
    env = _env(server, customer.token, demo.url, tmp_path, FLEET_INGEST_ENABLED=switch)
    code, out = _run(["once"], env, tmp_path, channel_factory=counting)
    assert code == 0
    assert out == ""
    assert counting.channels == 0
    assert counting.calls == []
    assert caplog.text.count(OFF_MESSAGE) == 1
    assert not (tmp_path / "state").exists()  # not even the push state is created


def test_opt_in_on_connects_and_pushes(
    server: InProcessServer, new_customer, demo: Any, tmp_path: Path, engine: Engine
) -> None:
    customer = new_customer("ON")
    counting = Counting(CountingInterceptor())
    code, out = _run(
        ["once"], _env(server, customer.token, demo.url, tmp_path), tmp_path, channel_factory=counting
    )
    assert code == 0, out
    assert counting.channels == 1
    assert "measurements    pushed (576 rows, 576 accepted, 0 duplicates" in out
    assert "sites           pushed (2 received: 2 inserted" in out
    source = SqlSource(demo.url)
    assert_mirrored(source, engine, customer.id)
    source.close()


def test_once_then_status_table_and_json(
    server: InProcessServer, new_customer, demo: Any, tmp_path: Path
) -> None:
    customer = new_customer("STATUS")
    env = _env(server, customer.token, demo.url, tmp_path, FLEET_MAX_ROWS_PER_TICK="500")
    code, out = _run(["once"], env, tmp_path)
    assert code == 0
    assert "back-fill: 500 rows sent, 76 left" in out
    code, table = _run(["status"], env, tmp_path)
    assert code == 0
    lines = table.splitlines()
    assert lines[0].startswith("FLEET_INGEST_ENABLED=true · server 127.0.0.1:")
    assert lines[1].split() == [
        "RESOURCE",
        "CURSOR",
        "LAST",
        "SUCCESS",
        "FAILURES",
        "NEXT",
        "ATTEMPT",
        "LAST",
        "ERROR",
    ]
    assert [line.split()[0] for line in lines[2:7]] == [
        "sites",
        "devices",
        "municipalities",
        "tariffs",
        "measurements",
    ]
    assert "2025-03-03T21:00:20+00:00 d1 power_w" in lines[6]
    assert customer.token not in table
    code, raw = _run(["status", "--json"], env, tmp_path)
    doc = json.loads(raw)
    measurements = doc["resources"][4]
    assert measurements["resource"] == "measurements"
    assert measurements["rows_sent"] == 500
    assert measurements["failures"] == 0
    assert measurements["cursor"] == {
        "received_at": "2025-03-03T21:00:20+00:00",
        "device_id": 1,
        "metric": "power_w",
        "time": "2025-03-03T20:45:00+00:00",
    }
    assert doc["lock"] is None
    assert doc["token_refused"] is None
    assert customer.token not in raw


def test_status_shows_both_lanes_during_a_backfill_and_one_after(
    server: InProcessServer, new_customer, demo: Any, tmp_path: Path
) -> None:
    customer = new_customer("LANES")
    env = _env(server, customer.token, demo.url, tmp_path, FLEET_MAX_ROWS_PER_TICK="500")
    assert _run(["once"], env, tmp_path)[0] == 0
    code, table = _run(["status"], env, tmp_path)
    assert code == 0
    lines = table.splitlines()
    at = lines.index("measurement lanes: back-fill and live (the live lane goes first in every tick)")
    backfill, live = lines[at + 1], lines[at + 2]
    assert backfill.startswith(
        "  back-fill  at 2025-03-03T21:00:20+00:00 d1 power_w → 2025-03-04T00:00:20+00:00 d3 power_w"
        " · 500 sent · 76 left · "
    )
    assert " rows/s · ETA " in backfill
    # The demo portal's newest reading (received at 00:00:20) is in the back-fill: the live lag
    # is the back-fill's distance from it.
    assert live.startswith(
        "  live       at 2025-03-04T00:00:20+00:00 d3 power_w · lag 3:00:00 (newest at the"
    )
    assert "newest acknowledged 2025-03-03T21:00:20+00:00) · 0 waiting · as of " in live
    doc = json.loads(_run(["status", "--json"], env, tmp_path)[1])
    assert doc["lanes"]["lanes"] == 2
    assert doc["lanes"]["backfill"]["rows_left"] == 76
    assert doc["lanes"]["backfill"]["split"]["received_at"] == "2025-03-04T00:00:20+00:00"
    assert doc["lanes"]["live"]["lag_s"] == 3 * 3600

    code, out = _run(["once", "--json"], env, tmp_path)
    assert code == 0
    backfill = json.loads(out)["backfill"]  # the tick that ends the back-fill still reports it
    assert (backfill["rows_sent"], backfill["rows_left"], backfill["live_lag_s"]) == (576, 0, 0.0)
    lines = _run(["status"], env, tmp_path)[1].splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("measurement lanes: one"))
    assert lines[at].startswith(
        "measurement lanes: one (no back-fill running; the last back-fill (576 rows) ended "
    )
    assert lines[at + 1].startswith("  live       at 2025-03-04T00:00:20+00:00 d3 power_w · lag 0.0s (")
    doc = json.loads(_run(["status", "--json"], env, tmp_path)[1])
    assert (doc["lanes"]["lanes"], doc["lanes"]["backfill"]["rows_left"], doc["lanes"]["live"]["lag_s"]) == (
        1,
        0,
        0,
    )


def test_a_second_pusher_on_the_same_state_refuses(
    server: InProcessServer, new_customer, demo: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    customer = new_customer("LOCKED")
    env = _env(server, customer.token, demo.url, tmp_path)
    holder = PushState.open(env["FLEET_STATE_URL"])
    holder.acquire()
    code, _ = _run(["once"], env, tmp_path)
    assert code == 1
    assert "another fleet-push is already pushing from this state" in capsys.readouterr().err
    holder.release()
    assert _run(["once"], env, tmp_path)[0] == 0


def test_settings_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _ = _run(["once"], {"FLEET_INGEST_ENABLED": "true"}, tmp_path)
    assert code == 2
    assert "FLEET_TOKEN, FLEET_SOURCE_URL is not set" in capsys.readouterr().err
    code, _ = _run(
        ["once"],
        {
            "FLEET_INGEST_ENABLED": "true",
            "FLEET_TOKEN": mint(TokenKind.CUSTOMER),
            "FLEET_SOURCE_URL": "sqlite://",
            "FLEET_SERVER": "10.1.2.3:50051",
        },
        tmp_path,
    )
    assert code == 2
    assert "refusing to send the token in plaintext to 10.1.2.3:50051" in capsys.readouterr().err


def test_env_file_is_read(
    server: InProcessServer, new_customer, demo: Any, tmp_path: Path, engine: Engine
) -> None:
    customer = new_customer("DOTENV")
    env_file = tmp_path / "fleet.env"
    env_file.write_text(
        "\n".join(f'{k}="{v}"' for k, v in _env(server, customer.token, demo.url, tmp_path).items()) + "\n"
    )
    out = io.StringIO()
    assert main(["--env-file", str(env_file), "once"], Runtime(env={}, out=out)) == 0
    assert central_count(engine, customer.id) == 576


def test_demo_portal_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = io.StringIO()
    target = tmp_path / "portal.db"
    assert main(["demo-portal", str(target)], Runtime(out=out)) == 0
    assert "2 sites, 3 devices, 1 municipality, 1 tariff (2 periods), 4,032 readings" in out.getvalue()
    assert f"FLEET_SOURCE_URL=sqlite:///{target}" in out.getvalue()
    assert main(["demo-portal", str(target)], Runtime(out=io.StringIO())) == 2
    assert "exists; pass --force" in capsys.readouterr().err
    assert main(["demo-portal", str(target), "--force", "--days", "2"], Runtime(out=io.StringIO())) == 0
    source = SqlSource(f"sqlite:///{target}")
    assert source.count_measurements_after(None, until=now_clock().now()) == 2 * 96 * 3 * 2
    source.close()


@pytest.fixture
def pg_portal(database_url: str) -> Iterator[str]:
    url = create_scratch_database(database_url, prefix="fleet_portal")
    yield url
    drop_database(url)


def test_portal_and_push_state_in_postgresql(
    server: InProcessServer, new_customer, pg_portal: str, tmp_path: Path, engine: Engine
) -> None:
    # The demo portal's rows, copied into a PostgreSQL portal; the push state lives beside them.
    from sqlalchemy import create_engine, insert, select

    from fleet_client import portal_schema as t

    demo = create_demo_portal(tmp_path / "demo.db", days=1)
    sqlite, pg = create_engine(demo.url), create_engine(pg_portal)
    t.create_portal_schema(pg)
    with sqlite.connect() as src, pg.begin() as dst:
        for table in t.metadata.sorted_tables:
            rows = [dict(r._mapping) for r in src.execute(select(table))]
            if rows:
                dst.execute(insert(table), rows)
    customer = new_customer("PGPORTAL")
    # Two capped ticks: a back-fill with its lanes kept in PostgreSQL beside the portal.
    env = _env(
        server, customer.token, pg_portal, tmp_path, FLEET_STATE_URL=pg_portal, FLEET_MAX_ROWS_PER_TICK="400"
    )
    code, out = _run(["once"], env, tmp_path)
    assert code == 0, out
    state = PushState.open(pg_portal)
    assert state.load_lanes().split is not None
    state.close()
    code, out = _run(["once"], env, tmp_path)
    assert code == 0, out
    source = SqlSource(pg)
    assert_mirrored(source, engine, customer.id)
    state = PushState.open(pg_portal)
    assert state.load("measurements").rows_sent == 576
    assert state.load_lanes().split is None
    state.close()
    sqlite.dispose()
    pg.dispose()
