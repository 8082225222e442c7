"""The test PostgreSQL: the server of `FLEET_TEST_DATABASE_URL` when set, else an embedded one.

The embedded server lives in a `fleet-test-pg-*` folder in the temporary directory, removed when
the process exits. A run that cannot clean up after itself (SIGKILL, out of memory) leaves its
folder unlocked; the next run stops that PostgreSQL and removes the folder.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import os
import shutil
import signal
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, make_url, text
from sqlalchemy.engine import URL

import fleet_server.db.models  # noqa: F401  (registers every table on the metadata)
from fleet_server.db.base import Base

_FOLDER_PREFIX = "fleet-test-pg-"
# Locked (flock) by the process that uses the folder for as long as it lives; the kernel drops
# the lock however that process ends, which is how a later run tells an abandoned folder.
_OWNER_LOCK = "owner.lock"
_owner_locks: list[int] = []


def base_url() -> str:
    """A URL on the test PostgreSQL server (the embedded one is started on first use)."""
    return os.environ.get("FLEET_TEST_DATABASE_URL") or _start_embedded()


def _start_embedded() -> str:
    from fleet_server.db.embedded import start_embedded

    _remove_abandoned()
    folder = Path(tempfile.mkdtemp(prefix=_FOLDER_PREFIX))
    _own(folder)
    # Registered before pgserver registers the handler that stops PostgreSQL, so it runs after
    # that one (exit handlers run last in, first out).
    atexit.register(_remove, folder)
    url, _ = start_embedded(folder, database="fleet_test")
    return url


def _own(folder: Path) -> None:
    """Lock the folder's owner file until this process ends.

    The file is locked under another name and then renamed: a run sweeping abandoned folders
    never sees it unlocked. The descriptor is not inherited, so no child outlives us with it.
    """
    staging = folder / f"{_OWNER_LOCK}.new"
    fd = os.open(staging, os.O_CREAT | os.O_WRONLY, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    staging.rename(folder / _OWNER_LOCK)
    _owner_locks.append(fd)


def _remove(folder: Path) -> None:
    # Only a stopped PostgreSQL has no pid file: a forked child exiting leaves the folder alone,
    # and one that would not stop is left to the next run's sweep.
    if not (folder / "pg" / "postmaster.pid").exists():
        shutil.rmtree(folder, ignore_errors=True)


def _remove_abandoned() -> None:
    """Stop the PostgreSQL of every folder whose run has died, and remove the folder."""
    if not Path("/proc/self").exists():  # the postmaster's identity is checked through /proc
        return
    for folder in Path(tempfile.gettempdir()).glob(f"{_FOLDER_PREFIX}*"):
        try:
            fd = os.open(folder / _OWNER_LOCK, os.O_RDONLY)
        except OSError:
            continue  # no owner lock: not a folder this code made
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            continue  # its run is alive
        pid = _postmaster_pid(folder)
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGQUIT)  # immediate shutdown: the data goes anyway
            deadline = time.monotonic() + 10
            while _postmaster_pid(folder) is not None and time.monotonic() < deadline:
                time.sleep(0.1)
        shutil.rmtree(folder, ignore_errors=True)
        os.close(fd)


def _postmaster_pid(folder: Path) -> int | None:
    """The pid of the PostgreSQL running on `folder`, or None (a stale pid file is checked in /proc)."""
    data = folder / "pg"
    try:
        pid = int((data / "postmaster.pid").read_text().split()[0])
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError, IndexError):
        return None
    return pid if str(data.resolve()).encode() in command else None


def _admin_url(url: str) -> URL:
    return make_url(url).set(database="postgres")


def create_scratch_database(url: str, prefix: str = "fleet_scratch") -> str:
    """A new, empty database on the same server as `url`; drop it with `drop_database`."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    engine = create_engine(_admin_url(url), isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return make_url(url).set(database=name).render_as_string(hide_password=False)


def drop_database(url: str) -> None:
    name = make_url(url).database
    engine = create_engine(_admin_url(url), isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    engine.dispose()


# Children before parents; truncating the partitioned `measurements` truncates its partitions.
TABLES = tuple(table.fullname for table in reversed(Base.metadata.sorted_tables))


def truncate_all(engine: Any) -> None:
    """Empty every fleet table (partitions included) between tests."""
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE"))
