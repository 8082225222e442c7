"""The benchmark's private world: a fresh database, a real `fleet-server` process, tokens, customers."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
from sqlalchemy import create_engine, text

from fleet_server.db import migrate
from fleet_server.db.session import Database
from fleet_server.domain.admin_tokens import create_admin_token
from fleet_server.domain.customers import create_customer


@dataclass
class BenchEnvironment:
    """Owns the database and the server process for one `make bench` run."""

    url: str
    _embedded: Any = None
    _server: subprocess.Popen[bytes] | None = None
    _metrics_server: subprocess.Popen[bytes] | None = None
    metrics_port: int = 0
    port: int = 0
    admin_token: str = ""
    tokens: dict[str, str] = field(default_factory=dict)

    @classmethod
    def create(cls) -> BenchEnvironment:
        url = os.environ.get("FLEET_BENCH_DATABASE_URL")
        embedded = None
        if not url:
            from fleet_server.db.embedded import start_embedded

            folder = Path(tempfile.mkdtemp(prefix="fleet-bench-pg-"))
            url, embedded = start_embedded(folder, database="fleet_bench")
        env = cls(url=url, _embedded=embedded)
        env.reset()
        return env

    def reset(self) -> None:
        """Drop everything fleet and the baselines own, then migrate: every run starts empty."""
        engine = create_engine(self.url, isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.execute(text("DROP SCHEMA IF EXISTS fleet_partitions CASCADE"))
            conn.execute(text("DROP SCHEMA IF EXISTS fleet CASCADE"))
            conn.execute(text("DROP TABLE IF EXISTS public.alembic_version"))
            conn.execute(text("DROP SCHEMA IF EXISTS bench CASCADE"))
            conn.execute(text("CREATE SCHEMA bench"))
        engine.dispose()
        migrate.upgrade(self.url)
        db = Database.from_url(self.url, 1)
        now = datetime.now(UTC)
        self.admin_token = db.transaction(create_admin_token, "bench", now).token
        db.close()

    def customer(self, code: str) -> str:
        """The token of customer `code`, created on first use."""
        if code not in self.tokens:
            db = Database.from_url(self.url, 1)
            issued = db.transaction(create_customer, code, code.title(), datetime.now(UTC))
            db.close()
            self.tokens[code] = issued.token
        return self.tokens[code]

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        """Process id of the running server."""
        assert self._server is not None
        return self._server.pid

    def start_server(self, settings: Mapping[str, str] | None = None, log: Path | None = None) -> None:
        """Start `fleet-server`; `settings` (`FLEET_*` variables) override the benchmark's own, and
        its log goes to `log` when given."""
        self.port = _free_port()
        self._server = self._spawn(self.port, settings, log)

    def start_metrics_server(self) -> str:
        """A second server on the same database with --metrics-listen: the ingest figure is measured
        through both in the same rounds, so the cost of the metrics is seen against the noise."""
        self.metrics_port = _free_port()
        self._metrics_server = self._spawn(
            self.metrics_port, {"FLEET_METRICS_LISTEN": f"127.0.0.1:{_free_port()}"}
        )
        return f"127.0.0.1:{self.metrics_port}"

    def _spawn(
        self, port: int, settings: Mapping[str, str] | None = None, log: Path | None = None
    ) -> subprocess.Popen[bytes]:
        env = {
            **os.environ,
            "FLEET_DATABASE_URL": self.url,
            "FLEET_LOG_LEVEL": "WARNING",
            # The benchmark measures the ingest path, not the fairness budget.
            "FLEET_INGEST_ROWS_PER_S": "100000000",
            "FLEET_INGEST_BURST_ROWS": "100000000",
            "FLEET_MAX_MESSAGE_BYTES": str(64 * 1024 * 1024),
            # Compression is run by the cold section, when it means to: never behind a figure's back.
            "FLEET_COMPRESS": "false",
            **(settings or {}),
        }
        sink = log.open("ab") if log is not None else None
        try:
            server = subprocess.Popen(
                [sys.executable, "-m", "fleet_server.cli", "serve", "--listen", f"127.0.0.1:{port}"],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=sink if sink is not None else subprocess.DEVNULL,
            )
        finally:
            if sink is not None:
                sink.close()
        # The server opens its port only once it is ready to serve (its database is up: ours).
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            grpc.channel_ready_future(channel).result(timeout=60)
        return server

    def stop_server(self) -> None:
        for server in (self._server, self._metrics_server):
            if server is not None and server.poll() is None:
                server.terminate()
                try:
                    server.wait(15)
                except subprocess.TimeoutExpired:
                    server.kill()
                    server.wait(15)
        self._server = self._metrics_server = None

    def close(self) -> None:
        self.stop_server()
        if self._embedded is not None:
            self._embedded.cleanup()  # stops the embedded PostgreSQL: this run is its only user
            shutil.rmtree(self._embedded.pgdata.parent, ignore_errors=True)
            self._embedded = None


def _free_port() -> int:
    """A free loopback port for a server to listen on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
