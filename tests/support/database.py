"""The test PostgreSQL: `FLEET_TEST_DATABASE_URL` when set, else an embedded one started once."""

from __future__ import annotations

import atexit
import os
import tempfile
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, make_url, text
from sqlalchemy.engine import URL

import fleet_server.db.models  # noqa: F401  (registers every table on the metadata)
from fleet_server.db.base import Base

_embedded: list[Any] = []


def base_url() -> str:
    """The URL of the test database (created if it does not exist yet)."""
    url = os.environ.get("FLEET_TEST_DATABASE_URL")
    if not url:
        from fleet_server.db.embedded import start_embedded

        folder = Path(tempfile.mkdtemp(prefix="fleet-test-pg-"))
        url, server = start_embedded(folder, database="fleet_test")
        _embedded.append(server)
        atexit.register(_embedded.clear)
        return url
    ensure_database(url)
    return url


def _admin_url(url: str) -> URL:
    return make_url(url).set(database="postgres")


def ensure_database(url: str) -> None:
    name = make_url(url).database
    engine = create_engine(_admin_url(url), isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        exists = conn.scalar(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name})
        if not exists:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    engine.dispose()


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


def reset_schema(url: str) -> None:
    """Drop everything fleet owns so the next `upgrade head` starts from nothing."""
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text("DROP SCHEMA IF EXISTS fleet_partitions CASCADE"))
        conn.execute(text("DROP SCHEMA IF EXISTS fleet CASCADE"))
        conn.execute(text("DROP TABLE IF EXISTS public.alembic_version"))
    engine.dispose()


# Children before parents; truncating the partitioned `measurements` truncates its partitions.
TABLES = tuple(table.fullname for table in reversed(Base.metadata.sorted_tables))


def truncate_all(engine: Any) -> None:
    """Empty every fleet table (partitions included) between tests."""
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE"))
