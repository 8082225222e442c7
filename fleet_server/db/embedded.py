"""An embedded PostgreSQL (PyPI `pgserver`) for `make run` and the test suite, when no URL is set."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any
from urllib.parse import quote

_LOGGER = logging.getLogger(__name__)


def start_embedded(data_dir: Path, database: str = "fleet") -> tuple[str, Any]:
    """Start (or attach to) PostgreSQL in `data_dir/pg`; returns a psycopg URL and the server handle.

    pgserver shares one postmaster per data folder between processes and stops it when the last
    user exits, so several `fleet-server` workers (and a test run) can point at one folder.
    """
    pg_dir = (data_dir / "pg").resolve()
    pg_dir.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset (containers, su, cron) and falls back
        # to /tmp/runtime-$UID, which serves pgserver just as well: not worth a line on every start.
        warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
        import pgserver  # imported here: only the embedded mode needs it

        server = pgserver.get_server(pg_dir, cleanup_mode="stop")  # type: ignore[attr-defined]
    exists = server.psql(f"SELECT 1 FROM pg_database WHERE datname = '{database}';")
    if "1 row" not in exists:
        server.psql(f'CREATE DATABASE "{database}";')
    socket_dir = server.get_uri().split("host=")[-1]
    url = f"postgresql+psycopg://postgres@/{database}?host={quote(socket_dir, safe='/')}"
    _LOGGER.info("embedded PostgreSQL running in %s", pg_dir)
    return url, server
