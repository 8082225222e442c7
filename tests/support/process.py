"""The real `fleet-server` (and other CLIs) as child processes, for end-to-end tests."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from sqlalchemy import Connection, create_engine, text
from sqlalchemy.pool import NullPool

from fleet_server.db.session import application_name

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cli(name: str) -> str:
    """Path of a console script installed next to this interpreter."""
    path = BIN / name
    return str(path) if path.exists() else (shutil.which(name) or name)


def wait_serving(target: str, timeout: float = 30.0, credentials: Any = None) -> None:
    """Block until the overall health status at `target` is SERVING."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        channel = (
            grpc.secure_channel(target, credentials)
            if credentials is not None
            else grpc.insecure_channel(target)
        )
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=2
            )
            if reply.status == health_pb2.HealthCheckResponse.SERVING:
                return
        except grpc.RpcError as exc:
            last = exc
        finally:
            channel.close()
        time.sleep(0.1)
    raise TimeoutError(f"{target} not SERVING after {timeout}s: {last}")


def settle_backends(database_url: str, pid: int, timeout: float = 30.0) -> None:
    """After process `pid` was killed: wait until PostgreSQL has finished all it left running.

    Its backends still run whatever it sent before it died, even a statement that sat unread
    in the socket while the backend looked idle, and commit it; they exit only once they read
    the end of the connection. Until the last one has, rows can still appear or go and its locks
    (the stream locks too) are still held. Its backends are found by the `application_name`
    every connection of a fleet-server process carries.
    """
    deadline = time.monotonic() + timeout
    with _activity(database_url) as conn:
        while _backend_count(conn, pid):
            if time.monotonic() > deadline:
                raise TimeoutError(f"backends of the killed process still there after {timeout}s")
            time.sleep(0.02)


def _activity(database_url: str) -> Connection:
    # Autocommit: pg_stat_activity is a snapshot per transaction, so each look needs its own.
    engine = create_engine(database_url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    return engine.connect()


def _backend_count(conn: Connection, pid: int) -> int:
    """How many PostgreSQL backends serve the connections of fleet-server process `pid`."""
    return int(
        conn.scalar(
            text("SELECT count(*) FROM pg_stat_activity WHERE application_name = :name"),
            {"name": application_name(pid)},
        )
        or 0
    )


class ServerProcess:
    """`fleet-server serve` on a free loopback port against the test database."""

    def __init__(
        self,
        database_url: str,
        *extra_args: str,
        env: dict[str, str] | None = None,
        port: int | None = None,
        data_dir: Path | None = None,
    ) -> None:
        self.port = port or free_port()
        self.target = f"127.0.0.1:{self.port}"
        self.database_url = database_url
        self.extra_args = list(extra_args)
        self.env = {**os.environ, "FLEET_DATABASE_URL": database_url, **(env or {})}
        # The server names its connections after its pid (see `settle`); PGAPPNAME would win.
        self.env.pop("PGAPPNAME", None)
        if data_dir is not None:
            self.env["FLEET_DATA_DIR"] = str(data_dir)
        self.proc: subprocess.Popen[str] | None = None
        self.output = ""

    def start(self, *, wait: bool = True, credentials: Any = None) -> ServerProcess:
        self.proc = subprocess.Popen(
            [cli("fleet-server"), "serve", "--listen", self.target, *self.extra_args],
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        if wait:
            try:
                wait_serving(self.target, credentials=credentials)
            except TimeoutError:
                self.kill()
                raise
        return self

    def terminate(self, timeout: float = 30.0) -> int:
        """SIGTERM and wait; returns the exit code."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.wait(timeout)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.wait(10)

    def backends(self) -> int:
        """How many PostgreSQL backends serve this process's connections right now."""
        assert self.proc is not None
        with _activity(self.database_url) as conn:
            return _backend_count(conn, self.proc.pid)

    def settle(self, timeout: float = 30.0) -> None:
        """After a kill: wait until PostgreSQL has finished all the dead process left running."""
        assert self.proc is not None
        settle_backends(self.database_url, self.proc.pid, timeout)

    def wait(self, timeout: float) -> int:
        assert self.proc is not None
        out, _ = self.proc.communicate(timeout=timeout)
        self.output += out or ""
        return int(self.proc.returncode)

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.kill()
