"""What the readings take on disk: hot and compressed readings per customer, and the relations' real sizes.

Readings are counted where counting them is cheap and exact: hot readings from the hourly rollup
table (`sum(count)`: every hot row is in its hour's rollup, and compression deletes both
together), compressed readings from the units' `readings` column. Bytes are measured, not
estimated: `pg_total_relation_size` of every measurement partition, of the rollup table and of
`fleet.measurements_compressed` (heap, indexes, TOAST, free space), and the stored size of each
unit's payload (`pg_column_size` reads the TOAST pointer, never the payload itself). How these are
shared out among customers is the domain's decision (`domain.storage`).

Cost: one pass over the rollup table (hot days only: it shrinks as days are compressed) and over
the compressed table's rows (not their TOASTed payloads), plus an index range per customer shown.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.orm import Session

from fleet_server.db.base import SCHEMA

# The partitions of fleet.measurements (and the parent, which holds nothing) and the rollups.
_HOT_RELATION_BYTES = text(
    f"""
SELECT (SELECT coalesce(sum(pg_total_relation_size(relid)), 0)
        FROM pg_partition_tree('{SCHEMA}.measurements'))
     + pg_total_relation_size('{SCHEMA}.measurement_rollups_hourly')
"""
)
_COMPRESSED_RELATION_BYTES = text(f"SELECT pg_total_relation_size('{SCHEMA}.measurements_compressed')")

_HOT_TOTAL = text(f"SELECT coalesce(sum(count), 0) FROM {SCHEMA}.measurement_rollups_hourly")
_COMPRESSED_TOTAL = text(
    f"""
SELECT count(*), coalesce(sum(readings), 0), coalesce(sum(pg_column_size(payload)), 0)
FROM {SCHEMA}.measurements_compressed
"""
)
_HOT_BY_CUSTOMER = text(
    f"""
SELECT customer_id, sum(count) FROM {SCHEMA}.measurement_rollups_hourly
WHERE customer_id = ANY(CAST(:customers AS bigint[]))
GROUP BY customer_id
"""
)
_COMPRESSED_BY_CUSTOMER = text(
    f"""
SELECT customer_id, count(*), sum(readings), sum(pg_column_size(payload))
FROM {SCHEMA}.measurements_compressed
WHERE customer_id = ANY(CAST(:customers AS bigint[]))
GROUP BY customer_id
"""
)


@dataclass(frozen=True)
class Holdings:
    """Readings in each form and the bytes of the unit payloads that hold the compressed ones."""

    hot_readings: int = 0
    compressed_units: int = 0
    compressed_readings: int = 0
    payload_bytes: int = 0


@dataclass(frozen=True)
class RelationBytes:
    """What the relations take on disk: `hot` = measurement partitions + rollups, `compressed` = units."""

    hot: int
    compressed: int


def relation_bytes(session: Session) -> RelationBytes:
    hot = session.execute(_HOT_RELATION_BYTES).scalar_one()
    compressed = session.execute(_COMPRESSED_RELATION_BYTES).scalar_one()
    return RelationBytes(hot=int(hot), compressed=int(compressed))


def fleet_holdings(session: Session) -> Holdings:
    """Every customer's readings together."""
    hot = session.execute(_HOT_TOTAL).scalar_one()
    units, readings, payload = session.execute(_COMPRESSED_TOTAL).one()
    return Holdings(int(hot), int(units), int(readings), int(payload))


def holdings_of(session: Session, customer_ids: Sequence[int]) -> dict[int, Holdings]:
    """Each given customer's readings; a customer with none gets zeros."""
    if not customer_ids:
        return {}
    ids = list(customer_ids)
    hot = {int(c): int(n) for c, n in session.execute(_HOT_BY_CUSTOMER, {"customers": ids})}
    cold = {
        int(c): (int(u), int(r), int(p))
        for c, u, r, p in session.execute(_COMPRESSED_BY_CUSTOMER, {"customers": ids})
    }
    return {i: Holdings(hot.get(i, 0), *cold.get(i, (0, 0, 0))) for i in ids}
