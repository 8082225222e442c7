"""What "nothing was written" means in a test: a fingerprint of every row of every fleet table.

Each table of the `fleet` schema (found in the catalogue, so a table added later is covered
too; partitions are read through their parent) contributes its row count and a sum of row
hashes. Two equal fingerprints mean no row was added, removed or changed, tokens and
activation included.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, text

Fingerprint = dict[str, tuple[int, int]]


def fleet_tables(conn: Any) -> list[str]:
    rows = conn.execute(
        text(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = 'fleet' AND c.relkind IN ('r', 'p') AND NOT c.relispartition "
            "ORDER BY c.relname"
        )
    )
    return [str(r[0]) for r in rows]


def fingerprint(engine: Engine) -> Fingerprint:
    """(rows, sum of row hashes) per fleet table."""
    with engine.connect() as conn:
        result: Fingerprint = {}
        for table in fleet_tables(conn):
            count, digest = conn.execute(
                text(
                    f"SELECT count(*), coalesce(sum(hashtextextended(t::text, 0)), 0)::text "
                    f"FROM fleet.{table} AS t"
                )
            ).one()
            result[table] = (int(count), int(digest))
        return result
