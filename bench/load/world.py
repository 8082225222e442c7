"""The run's private world: a fresh database, the real `fleet-server` on loopback, an admin token, customers.

The database is new for every run, so the final count sees only this run's rows: an embedded
PostgreSQL in a temporary folder, or, when `FLEET_DATABASE_URL` is set, a scratch database created
next to the one it names (and dropped afterwards; the named database itself is never touched).
The server is started exactly as an operator would start it: `fleet-server migrate`,
`fleet-server admin-token create`, `fleet-server serve --listen 127.0.0.1:PORT [--workers N]`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
from fleet.v1 import admin_service_pb2, admin_service_pb2_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from sqlalchemy import create_engine, make_url, text

_LOGGER = logging.getLogger(__name__)

BIN = Path(sys.executable).parent
# Customers are created a few at a time: creating them is set-up, not the load being measured.
_CREATE_CONCURRENCY = 8
_STOP_TIMEOUT_S = 30.0
_PROBE_TIMEOUT_S = 1.0


def cli(name: str) -> str:
    """A console script of this interpreter's environment (`.venv/bin/fleet-server`)."""
    path = BIN / name
    return str(path) if path.exists() else (shutil.which(name) or name)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_serving(target: str, timeout: float = 60.0) -> None:
    """Block until the overall health of `target` is SERVING."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        with grpc.insecure_channel(target) as channel:
            try:
                reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=2)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError as exc:
                last = exc
        time.sleep(0.2)
    raise TimeoutError(f"fleet-server at {target} not SERVING after {timeout:.0f}s: {last}")


def _scratch_database(url: str) -> str:
    """A new empty database on the server `url` points at; its URL."""
    name = f"fleet_load_{uuid.uuid4().hex[:10]}"
    admin = make_url(url).set(database="postgres")
    engine = create_engine(admin, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return make_url(url).set(database=name).render_as_string(hide_password=False)


def _drop_database(url: str) -> None:
    name = make_url(url).database
    engine = create_engine(make_url(url).set(database="postgres"), isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    engine.dispose()


@dataclass
class World:
    """Owns the database and the server process of one run."""

    url: str
    folder: Path
    database_kind: str
    log_path: Path
    _embedded: Any = None
    _scratch: bool = False
    _server: subprocess.Popen[bytes] | None = None
    _log: Any = None
    port: int = 0
    admin_token: str = ""
    tokens: dict[str, str] = field(default_factory=dict)

    @classmethod
    def create(cls, log_path: Path) -> World:
        """A fresh database, migrated, with an admin token; `log_path` receives the server's log."""
        folder = Path(tempfile.mkdtemp(prefix="fleet-load-"))
        log_path.unlink(missing_ok=True)
        given = os.environ.get("FLEET_DATABASE_URL")
        if given:
            world = cls(_scratch_database(given), folder, "scratch database", log_path, _scratch=True)
        else:
            # pgserver's lock-file location warns on machines without XDG_RUNTIME_DIR; it works.
            warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR")
            from fleet_server.db.embedded import start_embedded

            url, embedded = start_embedded(folder, database="fleet_load")
            world = cls(url, folder, "embedded PostgreSQL", log_path, _embedded=embedded)
        try:
            world._fleet_server("migrate")
            world.admin_token = world._fleet_server("admin-token", "create", "load").split()[0]
        except BaseException:
            world.close()
            raise
        return world

    def _env(self) -> dict[str, str]:
        return {**os.environ, "FLEET_DATABASE_URL": self.url, "FLEET_DATA_DIR": str(self.folder)}

    def _fleet_server(self, *args: str) -> str:
        done = subprocess.run(
            [cli("fleet-server"), *args], env=self._env(), capture_output=True, text=True, check=False
        )
        if done.returncode != 0:
            raise RuntimeError(f"fleet-server {' '.join(args)} failed: {done.stderr.strip()[-2000:]}")
        return done.stdout

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def server_pid(self) -> int:
        assert self._server is not None
        return self._server.pid

    def start_server(self, workers: int) -> None:
        """`fleet-server serve` on a free loopback port, appending to the run's server log."""
        self.port = free_port()
        self._log = self.log_path.open("ab")
        self._server = subprocess.Popen(
            [cli("fleet-server"), "serve", "--listen", self.target, "--workers", str(workers)],
            env=self._env(),
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_serving(self.target)
        except TimeoutError:
            self.stop_server()
            raise

    def stop_server(self, timeout_s: float = _STOP_TIMEOUT_S) -> int | None:
        """SIGTERM (graceful: in-flight batches finish or roll back), then SIGKILL after `timeout_s`
        (a killed server's open transactions roll back); the exit code."""
        server, self._server = self._server, None
        if server is None:
            return None
        if server.poll() is None:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(timeout_s)
            except subprocess.TimeoutExpired:
                _LOGGER.warning("fleet-server did not stop within %.0fs; killing it", timeout_s)
                server.kill()
                server.wait(10)
        if self._log is not None:
            self._log.close()
            self._log = None
        return server.returncode

    def responsive_within(self, wait_s: float) -> float | None:
        """Seconds until a call that needs the server's database pool (ListCustomers) answers in
        time, or None when none did within `wait_s`: a server still busy with, or stuck on, the
        previous phase's work."""
        started = time.monotonic()
        metadata = (("authorization", f"Bearer {self.admin_token}"),)
        request = admin_service_pb2.ListCustomersRequest(page_size=1)
        with grpc.insecure_channel(self.target) as channel:
            stub = admin_service_pb2_grpc.FleetAdminServiceStub(channel)
            while time.monotonic() - started < wait_s:
                try:
                    stub.ListCustomers(request, metadata=metadata, timeout=_PROBE_TIMEOUT_S)
                    return time.monotonic() - started
                except grpc.RpcError:
                    time.sleep(0.2)
        return None

    def create_customers(self, codes: list[str]) -> dict[str, str]:
        """Create `codes` through the admin API (CreateCustomer returns each token once)."""
        self.tokens.update(asyncio.run(_create_customers(self.target, self.admin_token, codes)))
        return self.tokens

    def server_log_count(self, needle: str) -> int:
        try:
            with self.log_path.open("rb") as handle:
                return sum(1 for line in handle if needle.encode() in line)
        except OSError:
            return 0

    def close(self) -> None:
        self.stop_server()
        if self._scratch:
            with contextlib.suppress(Exception):
                _drop_database(self.url)
        if self._embedded is not None:
            with contextlib.suppress(Exception):
                self._embedded.cleanup()
            self._embedded = None
        shutil.rmtree(self.folder, ignore_errors=True)


async def _create_customers(target: str, admin_token: str, codes: list[str]) -> dict[str, str]:
    metadata = (("authorization", f"Bearer {admin_token}"),)
    tokens: dict[str, str] = {}
    gate = asyncio.Semaphore(_CREATE_CONCURRENCY)
    async with grpc.aio.insecure_channel(target) as channel:
        stub = admin_service_pb2_grpc.FleetAdminServiceStub(channel)

        async def create(code: str) -> None:
            async with gate:
                reply = await stub.CreateCustomer(
                    admin_service_pb2.CreateCustomerRequest(code=code, name=code.replace("_", " ").title()),
                    metadata=metadata,
                    timeout=60,
                )
                tokens[code] = reply.token

        await asyncio.gather(*(create(code) for code in codes))
    return tokens
