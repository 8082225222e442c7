"""The benchmark's private world: a fresh database, a real `fleet-server` process, tokens, customers."""

from __future__ import annotations

import os
import subprocess
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text

from fleet_server.db import migrate
from fleet_server.db.session import Database
from fleet_server.domain.admin_tokens import create_admin_token
from fleet_server.domain.customers import create_customer
from tests.support.database import reset_schema
from tests.support.process import cli, free_port, wait_serving


@dataclass
class BenchEnvironment:
    """Owns the database and the server process for one `make bench` run."""

    url: str
    _embedded: Any = None
    _server: subprocess.Popen[bytes] | None = None
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
        """Drop and re-create the schema so every run starts from the same empty database."""
        reset_schema(self.url)
        engine = create_engine(self.url, isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
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

    def start_server(self) -> None:
        self.port = free_port()
        env = {
            **os.environ,
            "FLEET_DATABASE_URL": self.url,
            "FLEET_LOG_LEVEL": "WARNING",
            # The benchmark measures the ingest path, not the fairness budget.
            "FLEET_INGEST_ROWS_PER_S": "100000000",
            "FLEET_INGEST_BURST_ROWS": "100000000",
            "FLEET_MAX_MESSAGE_BYTES": str(64 * 1024 * 1024),
        }
        self._server = subprocess.Popen(
            [cli("fleet-server"), "serve", "--listen", self.target],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_serving(self.target)

    def close(self) -> None:
        if self._server is not None and self._server.poll() is None:
            self._server.terminate()
            try:
                self._server.wait(15)
            except subprocess.TimeoutExpired:
                self._server.kill()
        self._embedded = None
