"""A PostgreSQL of a test's own, which it may stop, restart or freeze without disturbing the others.

The shared test database serves every test of the session; a database fault (a stopped or a
SIGSTOPped postmaster) must be staged on a server nobody else uses. This one is an embedded
PostgreSQL (pgserver) in a temporary folder, migrated, a couple of seconds to start.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from fleet_server.db import migrate
from fleet_server.db.embedded import start_embedded


class PrivatePostgres:
    def __init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="fleet-private-pg-"))
        self.url, self._server = start_embedded(self.folder, database="fleet_private")
        migrate.upgrade(self.url)
        self._frozen: list[int] = []

    def stop(self) -> None:
        """Stop the server the hard way, as a crash would: SIGQUIT is PostgreSQL's immediate shutdown.

        A signal rather than `pg_ctl -m immediate stop`, which now and then died of SIGSEGV here.
        """
        postmaster = self._server.get_postmaster_info().process
        postmaster.send_signal(signal.SIGQUIT)
        postmaster.wait(30)

    def start(self) -> None:
        """Start it again (pgserver re-reads the pid file, which a stop may leave for a moment;
        `pg_ctl start` is retried, since pg_ctl itself sometimes crashes)."""
        for _ in range(20):
            self._server._postmaster_info = None
            with contextlib.suppress(AssertionError, subprocess.CalledProcessError):
                self._server.ensure_postgres_running()
                return
            time.sleep(0.25)
        raise RuntimeError("the private PostgreSQL did not start again")

    def processes_running(self) -> bool:
        info = self._server._postmaster_info
        return bool(info is not None and info.is_running())

    def processes(self) -> list[Any]:
        postmaster = self._server.get_postmaster_info().process
        return [postmaster, *postmaster.children(recursive=True)]

    def freeze(self) -> None:
        """SIGSTOP the postmaster and every backend: a database that stops answering, connections open."""
        self._frozen = [p.pid for p in self.processes()]
        for pid in self._frozen:
            os.kill(pid, signal.SIGSTOP)

    def thaw(self) -> None:
        for pid in self._frozen:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        self._frozen = []

    def close(self) -> None:
        """Stop the server and remove its folder: nothing is left behind."""
        self.thaw()
        with contextlib.suppress(Exception):  # already stopped
            self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)
