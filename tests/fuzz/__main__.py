"""`make fuzz`: fuzz every RPC of a real `fleet-server` process for FUZZ_S seconds (default 300).

A fresh database on the test PostgreSQL (FLEET_TEST_DATABASE_URL, else an embedded one), a
`fleet-server serve` child process on it, then `tests.fuzz.harness.Fuzzer` until the time is up.
Prints calls per status (and per method and auth state), the server's RSS, the database check,
and every violation; exits 1 if there was any. FUZZ_SEED (default 1) picks the call sequence,
FUZZ_RSS_MB (default 1024) the server's memory bound.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

from sqlalchemy import create_engine

from fleet_server.db import migrate
from fleet_server.db.session import Database
from tests.fuzz.harness import Fuzzer, Report, Target
from tests.support.database import base_url, create_scratch_database, drop_database
from tests.support.process import ServerProcess


@dataclass(frozen=True)
class FuzzSettings:
    seconds: float
    seed: int
    rss_limit_mb: float

    @classmethod
    def from_env(cls, default_seconds: float = 300.0) -> FuzzSettings:
        return cls(
            seconds=float(os.environ.get("FUZZ_S") or default_seconds),
            seed=int(os.environ.get("FUZZ_SEED") or 1),
            rss_limit_mb=float(os.environ.get("FUZZ_RSS_MB") or 1024),
        )


def fuzz_server_process(database_url: str, settings: FuzzSettings) -> Report:
    """Fuzz a real server process on a scratch database next to `database_url`; the report."""
    scratch = create_scratch_database(database_url, prefix="fleet_fuzz")
    engine = create_engine(scratch)
    db = Database.from_url(scratch, pool_size=1)
    server = ServerProcess(scratch, env={"FLEET_LOG_LEVEL": "WARNING"})
    try:
        migrate.upgrade(scratch)
        server.start()
        assert server.proc is not None
        proc = server.proc
        target = Target(server.target, engine, pid=proc.pid, alive=lambda: proc.poll() is None)
        fuzzer = Fuzzer(target, db, seed=settings.seed)
        try:
            fuzzer.provision()
            return fuzzer.run(settings.seconds, settings.rss_limit_mb)
        finally:
            fuzzer.close()
    finally:
        server.kill()
        db.close()
        engine.dispose()
        drop_database(scratch)


def main() -> int:
    settings = FuzzSettings.from_env()
    print(f"fuzzing every RPC for {settings.seconds:g} s (seed {settings.seed})", flush=True)
    report = fuzz_server_process(base_url(), settings)
    print(report.table())
    return 1 if report.violations else 0


if __name__ == "__main__":
    sys.exit(main())
