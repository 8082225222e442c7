"""Reading measurements back, the use cases: one customer's points in chunks, and the fleet summary.

A request arrives as the caller sent it (unset fields None); every problem with it is reported
at once before anything is read. The SQL, the bucket arithmetic and the chunked reads are
`store.measurement_reads`'.
"""

from __future__ import annotations

import difflib
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from fleet_server.db.scheduler import Turn
from fleet_server.db.session import Database
from fleet_server.domain import customers
from fleet_server.domain.measurements import METRIC_PATTERN
from fleet_server.domain.rules import check_range
from fleet_server.errors import NotFound, Reason, Violations
from fleet_server.store import metric_catalog
from fleet_server.store.measurement_reads import (
    Bucket,
    CustomerSummary,
    MeasurementQuery,
    Point,
    PointKey,
    chunk_end,
    read_chunk,
    summarize_fleet,
)


@dataclass(frozen=True)
class PointsRequest:
    """What a QueryMeasurements caller asked for; `bucket` None when it named none we know."""

    code: str
    metric: str
    start: datetime | None
    end: datetime | None
    bucket: Bucket | None
    device_ids: tuple[int, ...] = ()


@dataclass(frozen=True)
class SummaryRequest:
    """What a SummarizeFleet caller asked for."""

    metric: str
    start: datetime | None
    end: datetime | None


def _check_metric_and_range(
    metric: str, start: datetime | None, end: datetime | None, problems: Violations
) -> None:
    """The metric and `[start, end)` shared by every query; any start is allowed (old data too)."""
    if not METRIC_PATTERN.fullmatch(metric):
        problems.add("metric", "must match [a-z][a-z0-9_]{0,62}")
    check_range(start, end, problems, earliest=None)


def check_points_request(request: PointsRequest) -> None:
    """INVALID_ARGUMENT naming every bad field of the request, if any."""
    problems = Violations()
    if not request.code:
        problems.add("code", "must be set")
    _check_metric_and_range(request.metric, request.start, request.end, problems)
    for i, device_id in enumerate(request.device_ids):
        if device_id <= 0:
            problems.add(f"device_ids[{i}]", "must be positive")
    if request.bucket is None:
        problems.add("bucket", "must be BUCKET_RAW, BUCKET_HOUR or BUCKET_DAY")
    problems.raise_if_any()


async def stream_points(
    reader: Database, turn: Turn, request: PointsRequest, chunk_size: int
) -> AsyncGenerator[list[Point]]:
    """The customer's points in chunks of at most `chunk_size`, each chunk one database turn.

    No connection is held between chunks (the caller may be slow to take them), and memory is
    bounded by the chunk whatever the range.
    """
    check_points_request(request)
    assert request.start is not None
    assert request.end is not None
    assert request.bucket is not None
    customer_id = await reader.run(turn, customers.customer_id_for, request.code)
    query = MeasurementQuery(
        customer_id, request.metric, request.start, request.end, request.bucket, request.device_ids
    )
    after: PointKey | None = None
    while True:
        points = await reader.run_blocking(turn, read_chunk, reader, query, after, chunk_size)
        if points:
            yield points
        if len(points) < chunk_size:
            break
        after = chunk_end(points)
    if after is None and not points:
        await reader.run(turn, _check_metric_known, customer_id, request.code, request.metric)


def _check_metric_known(session: Session, customer_id: int, code: str, metric: str) -> None:
    """NOT_FOUND (METRIC_UNKNOWN) when nothing was found because the customer has no reading of
    `metric` at all; an empty range of a known metric is simply empty."""
    if metric_catalog.has_metric(session, customer_id, metric):
        return
    known = metric_catalog.metrics_of(session, customer_id)
    close = difflib.get_close_matches(metric, known, n=1, cutoff=0.6)
    hint = f" (did you mean {close[0]}?)" if close else ""
    listed = f"; it has {', '.join(known)}" if known else "; it has no readings yet"
    raise NotFound(
        f"customer {code} has no readings of metric {metric}{hint}{listed}",
        reason=Reason.METRIC_UNKNOWN,
        metadata={"code": code, "metric": metric, "metrics": ",".join(known)},
    )


async def summarize(reader: Database, turn: Turn, request: SummaryRequest) -> list[CustomerSummary]:
    """One summary per customer (every customer, by code) of the metric over `[start, end)`."""
    problems = Violations()
    _check_metric_and_range(request.metric, request.start, request.end, problems)
    problems.raise_if_any()
    assert request.start is not None
    assert request.end is not None
    return await reader.run(turn, summarize_fleet, request.metric, request.start, request.end)
