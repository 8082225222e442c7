"""The final count: every acknowledged row is in the database exactly once, and so are its rollups.

The client processes keep every batch they sent (customer, uid, rows, attempts, the acknowledgement
they got). The database is read after the server has stopped, so no write is still in flight:
rows are counted per batch through `received_at` (see `batches`), rollup counts per customer.

- lost: rows of an acknowledged batch the database does not hold, plus rollup counts short of
  the rows stored;
- doubled: rows an acknowledgement claimed as new beyond the batch's size, rollup counts above the
  rows stored, and stored rows no batch of the run sent;
- partial: a batch with some but not all of its rows stored (batches are all-or-nothing);
- stored without an accepted ack: committed while its acknowledgement was lost (the stream broke
  after the commit). Not an error by itself — the portal resends and the rows come back as
  duplicates — but counted, because it is what a broken stream costs.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import create_engine, text

LedgerEntry = tuple[str, int, int, int, bool, int, int]  # code, uid, rows, attempts, acked, accepted, dups

_MICROSECOND = timedelta(microseconds=1)


def read_database(url: str, received_base: int) -> tuple[dict[tuple[str, int], int], dict[str, int]]:
    """(rows stored per (customer code, batch uid), rollup row counts per customer code)."""
    base = datetime.fromtimestamp(received_base, UTC)
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            stored = {
                (code, (received_at - base) // _MICROSECOND): int(count)
                for code, received_at, count in conn.execute(
                    text(
                        "SELECT c.code, m.received_at, count(*) FROM fleet.measurements m "
                        "JOIN fleet.customers c ON c.id = m.customer_id GROUP BY c.code, m.received_at"
                    )
                )
            }
            rollups = {
                code: int(total)
                for code, total in conn.execute(
                    text(
                        "SELECT c.code, sum(r.count) FROM fleet.measurement_rollups_hourly r "
                        "JOIN fleet.customers c ON c.id = r.customer_id GROUP BY c.code"
                    )
                )
            }
    finally:
        engine.dispose()
    return stored, rollups


def account(
    entries: Iterable[LedgerEntry], stored: dict[tuple[str, int], int], rollups: dict[str, int]
) -> dict[str, Any]:
    """Hold what the clients were told against what the database holds (see the module docstring)."""
    remaining = dict(stored)
    rows_by_code: dict[str, int] = {}
    figures = dict.fromkeys(
        (
            "batches",
            "acked_batches",
            "acked_rows",
            "accepted_rows",
            "duplicate_rows",
            "stored_rows",
            "lost_rows",
            "doubled_rows",
            "partial_batches",
            "ack_miscounts",
            "unacked_batches",
            "stored_unacked_rows",
            "duplicates_after_lost_ack",
            "resent_batches",
            "stray_rows",
            "rollup_short",
            "rollup_over",
        ),
        0,
    )
    for code, uid, rows, attempts, acked, accepted, duplicates in entries:
        held = remaining.pop((code, uid), 0)
        rows_by_code[code] = rows_by_code.get(code, 0) + held
        figures["batches"] += 1
        figures["stored_rows"] += held
        figures["resent_batches"] += attempts > 1
        if 0 < held < rows:
            figures["partial_batches"] += 1
        if not acked:
            figures["unacked_batches"] += 1
            figures["stored_unacked_rows"] += held
            continue
        figures["acked_batches"] += 1
        figures["acked_rows"] += rows
        figures["accepted_rows"] += accepted
        figures["duplicate_rows"] += duplicates
        figures["lost_rows"] += max(0, rows - held)
        figures["doubled_rows"] += max(0, accepted - rows)
        figures["ack_miscounts"] += accepted + duplicates != rows
        if attempts > 1:
            figures["duplicates_after_lost_ack"] += duplicates
    for (code, _uid), held in remaining.items():
        figures["stray_rows"] += held
        rows_by_code[code] = rows_by_code.get(code, 0) + held
    for code in set(rows_by_code) | set(rollups):
        difference = rollups.get(code, 0) - rows_by_code.get(code, 0)
        figures["rollup_over"] += max(0, difference)
        figures["rollup_short"] += max(0, -difference)
    figures["stored_rows"] += figures["stray_rows"]
    figures["stored_without_accepted_ack"] = figures["stored_rows"] - figures["accepted_rows"]
    figures["lost"] = figures["lost_rows"] + figures["rollup_short"]
    figures["doubled"] = figures["doubled_rows"] + figures["rollup_over"] + figures["stray_rows"]
    figures["exact"] = (
        figures["lost"] == 0
        and figures["doubled"] == 0
        and figures["partial_batches"] == 0
        and figures["ack_miscounts"] == 0
    )
    figures["customers"] = len(rows_by_code)
    return figures
