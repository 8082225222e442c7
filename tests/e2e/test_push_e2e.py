"""fleet-push end to end: the real `fleet-server` process, the real `fleet-push` and `fleetctl` CLIs.

The README tour as written; a server killed mid-stream and restarted (the pusher resumes from its
last acknowledged cursor and every row lands exactly once); `fleet-push run` working through a
back-fill and stopping cleanly on SIGTERM; and opt-in off proven on a listener that counts
connections.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fleet.v1 import admin_service_pb2 as admin_pb
from google.protobuf import duration_pb2
from sqlalchemy import Engine, create_engine, insert

from fleet_client import portal_schema as t
from fleet_client.backoff import Backoff
from fleet_client.buildrate import write_backlog
from fleet_client.cli import OFF_MESSAGE
from fleet_client.client import CallOptions, FleetClient
from fleet_client.demo import create_demo_portal
from fleet_client.pusher import Outcome, Pusher, PushOptions
from fleet_client.rows import Cursor
from fleet_client.source import SqlSource
from fleet_client.state import PushState
from fleet_server.db.session import Database
from fleet_server.domain.tokens import TokenKind, mint
from tests.support.client_sync import assert_mirrored, central_count, now_clock
from tests.support.clients import Stubs, bearer
from tests.support.process import ServerProcess, cli, free_port

pytestmark = pytest.mark.e2e


def _env(**values: str) -> dict[str, str]:
    """The child's environment: ours minus any FLEET_* that could leak in, plus `values`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLEET_")}
    env.update(values)
    return env


def _run(
    args: list[str], env: dict[str, str], cwd: Path, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
    )


def test_readme_tour(
    database_url: str, db: Database, admin_token: str, engine: Engine, tmp_path: Path
) -> None:
    with ServerProcess(database_url, data_dir=tmp_path / "server") as server:
        ctl = _env(FLEET_SERVER=server.target, FLEET_ADMIN_TOKEN=admin_token)
        created = _run(
            [cli("fleetctl"), "customers", "create", "DEMO", "--name", "Demo portal"], ctl, tmp_path
        )
        assert created.returncode == 0, created.stderr
        token = created.stdout.strip().splitlines()[-1]
        assert token.startswith("fleet_")

        demo = _run([cli("fleet-push"), "demo-portal", "demo.db"], _env(), tmp_path)
        assert demo.returncode == 0, demo.stderr
        assert "4,032 readings" in demo.stdout

        push_env = _env(
            FLEET_INGEST_ENABLED="true",
            FLEET_SERVER=server.target,
            FLEET_TOKEN=token,
            FLEET_SOURCE_URL="sqlite:///demo.db",
        )
        once = _run([cli("fleet-push"), "once"], push_env, tmp_path)
        assert once.returncode == 0, once.stderr
        assert "measurements    pushed (4,032 rows, 4,032 accepted, 0 duplicates" in once.stdout
        assert token not in once.stdout + once.stderr
        assert (tmp_path / ".fleet" / "push-state.sqlite3").exists()  # the default state location

        again = _run([cli("fleet-push"), "once"], push_env, tmp_path)
        assert again.returncode == 0, again.stderr
        assert "sites           unchanged" in again.stdout
        assert "measurements    up to date" in again.stdout

        status = _run([cli("fleet-push"), "status"], push_env, tmp_path)
        assert status.returncode == 0, status.stderr
        assert "2025-03-10T00:00:20+00:00 d3 power_w" in status.stdout

        show = _run([cli("fleetctl"), "customers", "show", "DEMO"], ctl, tmp_path)
        assert show.returncode == 0, show.stderr
        for expected in ("Head Office", "Warehouse meter", "Domestic TOU", "Demo City", "Peak", "MTWTF--"):
            assert expected in show.stdout

        customer_id = next(
            iter(db.engine.connect().exec_driver_sql("SELECT id FROM fleet.customers WHERE code = 'DEMO'"))
        )[0]
        source = SqlSource(f"sqlite:///{tmp_path / 'demo.db'}")
        assert_mirrored(source, engine, customer_id)
        source.close()

        # Step 8: the demo's week (2025) is settled; compress it and see where the readings are.
        compressed = _run([cli("fleet-server"), "compress"], _env(FLEET_DATABASE_URL=database_url), tmp_path)
        assert compressed.returncode == 0, compressed.stderr
        assert "4,032 readings" in compressed.stdout
        storage = _run([cli("fleetctl"), "fleet", "storage", "--customer", "DEMO"], ctl, tmp_path)
        assert storage.returncode == 0, storage.stderr
        assert storage.stdout.splitlines()[2].split()[:3] == ["DEMO", "0", "4,032"]


def test_server_killed_mid_stream_then_restarted(
    database_url: str, new_customer, engine: Engine, tmp_path: Path
) -> None:
    portal_url = f"sqlite:///{tmp_path / 'portal.db'}"
    write_backlog(portal_url, 8_000, devices=20)
    customer = new_customer("KILLED")
    port = free_port()
    server = ServerProcess(database_url, port=port, data_dir=tmp_path / "server").start()
    clock = now_clock()
    client = FleetClient(
        server.target, customer.token, options=CallOptions(deadline_s=20, stream_deadline_s=60)
    )
    state = PushState.open(f"sqlite:///{tmp_path / 'state.db'}", clock)
    state.acquire()
    source = SqlSource(portal_url)
    acked: list[tuple[int, Cursor, int, int]] = []

    def on_ack(batch_id: int, cursor: Cursor, ack: Any) -> None:
        acked.append((batch_id, cursor, ack.accepted, ack.duplicates))
        if len(acked) == 3:
            server.kill()  # SIGKILL: no goodbye, batches in flight are lost or committed unacknowledged

    pusher = Pusher(
        source,
        client,
        state,
        options=PushOptions(batch_size=500, max_rows_per_tick=10_000, window=4),
        backoff=Backoff(20, 600, lambda: 1.0),
        clock=clock,
        on_batch_acked=on_ack,
    )
    try:
        report = pusher.tick()
        result = report.result("measurements")
        assert result.outcome is Outcome.FAILED
        assert (result.error or "").startswith(("UNAVAILABLE", "INTERNAL", "UNKNOWN"))
        saved = state.load("measurements")
        assert saved.cursor == acked[-1][1]  # exactly the last acknowledged batch, nothing further
        assert saved.rows_sent == 500 * len(acked)
        assert saved.failures == 1
        server.settle()  # a batch the dead server had already sent may still commit until then
        committed_before = central_count(engine, customer.id)
        assert committed_before >= saved.rows_sent

        server = ServerProcess(database_url, port=port, data_dir=tmp_path / "server").start()
        clock.advance(timedelta(seconds=20))  # the first backoff, with the random source pinned at 1.0
        pusher.on_batch_acked = lambda batch_id, cursor, ack: acked.append(
            (batch_id, cursor, ack.accepted, ack.duplicates)
        )
        report = pusher.tick()
        assert report.ok, report.summary()
        assert central_count(engine, customer.id) == 8_000
        # Rows committed but not acknowledged before the kill came back as duplicates, nothing else;
        # every other row was accepted exactly once.
        unacknowledged = committed_before - saved.rows_sent
        assert sum(a[3] for a in acked) == unacknowledged
        assert sum(a[2] for a in acked) == 8_000 - unacknowledged
        assert state.load("measurements").failures == 0
        assert_mirrored(source, engine, customer.id)
    finally:
        server.kill()
        client.close()
        source.close()
        state.release()
        state.close()


def test_run_backfills_with_progress_and_stops_cleanly_on_sigterm(
    database_url: str, new_customer, engine: Engine, tmp_path: Path
) -> None:
    portal_url = f"sqlite:///{tmp_path / 'portal.db'}"
    write_backlog(portal_url, 30_000, devices=30)
    customer = new_customer("RUNNER")
    state_url = f"sqlite:///{tmp_path / 'state.db'}"
    with ServerProcess(database_url, data_dir=tmp_path / "server") as server:
        env = _env(
            FLEET_INGEST_ENABLED="true",
            FLEET_SERVER=server.target,
            FLEET_TOKEN=customer.token,
            FLEET_SOURCE_URL=portal_url,
            FLEET_STATE_URL=state_url,
            FLEET_MAX_ROWS_PER_TICK="2000",
            FLEET_INTERVAL_S="3600",
        )
        proc = subprocess.Popen(
            [cli("fleet-push"), "run"],
            env=env,
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert proc.stdout is not None
            first = proc.stdout.readline()  # the first capped tick's progress line
            assert first.startswith("back-fill: 2,000 rows sent, 28,000 left, "), first
            assert "rows/s, ETA " in first
            proc.send_signal(signal.SIGTERM)
            out, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
        assert proc.returncode == 0, err
        assert "SIGTERM: stopping after the batches in flight" in err
        assert "fleet-push stopped" in err
        assert "back-fill:" not in err  # on stdout only: a terminal shows each progress line once
        assert customer.token not in out + err
    state = PushState.open(state_url)
    saved = state.load("measurements")
    assert state.lock_holder() is None  # released on the way out
    state.close()
    # Stopped after the batches in flight: everything sent was acknowledged, nothing half-done.
    assert saved.rows_sent % 500 == 0
    assert central_count(engine, customer.id) == saved.rows_sent
    assert 2_000 <= saved.rows_sent < 30_000


class _Lines:
    """Collects a child's output lines on a thread, so a test can wait for one without blocking."""

    def __init__(self, stream: Any) -> None:
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: Any) -> None:
        for line in stream:
            self.lines.append(line)

    @property
    def text(self) -> str:
        return "".join(self.lines)

    def join(self) -> None:
        self._thread.join(10)


def _wait_for(condition: Any, what: str, timeout: float = 60.0) -> None:
    """Poll a real process's visible effect (not a clock) until `condition()` holds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def test_run_follows_its_env_file_on_and_through_a_token_cutover(
    database_url: str, admin_token: str, new_customer, engine: Engine, tmp_path: Path
) -> None:
    demo = create_demo_portal(tmp_path / "portal.db", days=1)
    customer = new_customer("ENVFILE")
    env_file = tmp_path / ".env"
    with ServerProcess(database_url, data_dir=tmp_path / "server") as server:
        settings = (
            f"FLEET_SERVER={server.target}\nFLEET_SOURCE_URL={demo.url}\n"
            f"FLEET_STATE_URL=sqlite:///{tmp_path / 'state.db'}\nFLEET_INTERVAL_S=0.2\n"
        )
        env_file.write_text("FLEET_INGEST_ENABLED=false\n" + settings)
        proc = subprocess.Popen(
            [cli("fleet-push"), "run"],
            env=_env(),
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        err, out = _Lines(proc.stderr), _Lines(proc.stdout)
        stubs = Stubs.connect(server.target)
        try:
            _wait_for(lambda: OFF_MESSAGE in err.text, "the opt-in-off line")
            # Switched on in the .env: no restart needed.
            env_file.write_text(f"FLEET_INGEST_ENABLED=true\nFLEET_TOKEN='{customer.token}'\n" + settings)
            _wait_for(lambda: central_count(engine, customer.id) == 576, "the demo day to arrive")
            # The operator cuts over to a new token at once; new readings keep arriving meanwhile.
            new_token = stubs.admin.RotateCustomerToken(
                admin_pb.RotateCustomerTokenRequest(
                    code="ENVFILE", grace_period=duration_pb2.Duration(seconds=0)
                ),
                metadata=bearer(admin_token),
                timeout=15,
            ).token
            portal = create_engine(demo.url)
            received = datetime.now(UTC) - timedelta(minutes=1)
            with portal.begin() as conn:
                conn.execute(
                    insert(t.measurements),
                    [
                        {
                            "device_id": 9,
                            "metric": "power_w",
                            "time": received - timedelta(minutes=15 * i),
                            "value": 1.0,
                            "received_at": received,
                        }
                        for i in range(40)
                    ],
                )
            portal.dispose()
            _wait_for(lambda: "pushing is stopped until FLEET_TOKEN is changed" in err.text, "the refusal")
            assert central_count(engine, customer.id) == 576
            env_file.write_text(f"FLEET_INGEST_ENABLED=true\nFLEET_TOKEN={new_token}\n" + settings)
            _wait_for(lambda: central_count(engine, customer.id) == 616, "the readings after the cutover")
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(60) == 0
        finally:
            stubs.close()
            if proc.poll() is None:
                proc.kill()
            err.join()
            out.join()
        assert "FLEET_TOKEN changed: using the new token" in err.text
        assert "pushing resumes" in err.text
        for token in (customer.token, new_token):
            assert token not in err.text + out.text


class CountingListener:
    """A TCP listener that only counts the connections made to it."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.1)
        self.target = f"127.0.0.1:{self.sock.getsockname()[1]}"
        self.connections = 0
        self._open: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            self.connections += 1
            self._open.append(conn)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        for conn in self._open:
            conn.close()
        self.sock.close()


def test_opt_in_off_never_connects(tmp_path: Path) -> None:
    listener = CountingListener()
    try:
        base = {
            "FLEET_SERVER": listener.target,
            "FLEET_TOKEN": mint(TokenKind.CUSTOMER),  # well-formed, unknown to any server
            "FLEET_SOURCE_URL": f"sqlite:///{tmp_path / 'portal.db'}",
            "FLEET_STATE_URL": f"sqlite:///{tmp_path / 'state.db'}",
        }
        once = _run([cli("fleet-push"), "once"], _env(**base), tmp_path)
        assert once.returncode == 0, once.stderr
        assert once.stderr.count(OFF_MESSAGE) == 1

        run = subprocess.Popen(
            [cli("fleet-push"), "run"],
            env=_env(**base, FLEET_INGEST_ENABLED="no", FLEET_INTERVAL_S="0.05"),
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert run.stderr is not None
        assert OFF_MESSAGE in run.stderr.readline()
        time.sleep(1.0)  # let it re-read its settings some twenty times
        run.send_signal(signal.SIGTERM)
        _, err = run.communicate(timeout=30)
        assert run.returncode == 0
        assert OFF_MESSAGE not in err  # said once, on the first line, never again
        assert listener.connections == 0
        assert not (tmp_path / "state.db").exists()

        # The control: switched on, the same command does dial the listener.
        write_backlog(base["FLEET_SOURCE_URL"], 10)
        on = _run(
            [cli("fleet-push"), "once"],
            _env(**base, FLEET_INGEST_ENABLED="true", FLEET_DEADLINE_S="1", FLEET_STREAM_DEADLINE_S="1"),
            tmp_path,
        )
        assert on.returncode == 1
        assert listener.connections >= 1
    finally:
        listener.close()
