"""Small figures shared by the client processes and the report: percentiles and status names.

A refused call is named by its status code and, when the server sent a `google.rpc.Status` with an
`ErrorInfo`, its reason (`RESOURCE_EXHAUSTED/STREAM_ALREADY_OPEN`), so the table tells a fairness
refusal from the gRPC core's concurrent-RPC limit (no ErrorInfo) at a glance.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterable, Sequence
from typing import Any

import grpc
from google.rpc import error_details_pb2, status_pb2

DETAILS_KEY = "grpc-status-details-bin"
RETRY_AFTER_KEY = "retry-after-ms"
# Names of outcomes the harness itself causes, beside the gRPC status names.
CUT_AT_PHASE_END = "CUT_AT_PHASE_END"


def percentile(values: Sequence[float], q: float) -> float | None:
    """The `q`-th percentile (0..100) by the nearest-rank method; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def latency_summary(values: Sequence[float]) -> dict[str, Any]:
    return {
        "n": len(values),
        "p50": percentile(values, 50),
        "p99": percentile(values, 99),
        "max": max(values) if values else None,
    }


def _metadata_value(trailing: Iterable[Any] | None, key: str) -> Any:
    for item in trailing or ():
        if item[0] == key:
            return item[1]
    return None


def describe_error(error: grpc.RpcError) -> tuple[str, int | None]:
    """(`CODE` or `CODE/REASON`, the retry hint in ms or None) of a failed call."""
    code = error.code() if hasattr(error, "code") else None
    name = code.name if isinstance(code, grpc.StatusCode) else "UNKNOWN"
    if code == grpc.StatusCode.OK:  # the stream ended before it took the batch (`roles.raise_status`)
        name = "OK_WITHOUT_ACK"
    trailing = error.trailing_metadata() if hasattr(error, "trailing_metadata") else None
    reason = None
    retry_ms = None
    raw = _metadata_value(trailing, DETAILS_KEY)
    if isinstance(raw, bytes):
        status = status_pb2.Status()
        try:
            status.ParseFromString(raw)
        except Exception:  # a garbled detail must not hide the status code
            status = status_pb2.Status()
        for detail in status.details:
            if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                detail.Unpack(info)
                reason = info.reason or None
            elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
                retry = error_details_pb2.RetryInfo()
                detail.Unpack(retry)
                retry_ms = retry.retry_delay.seconds * 1000 + retry.retry_delay.nanos // 1_000_000
    hint = _metadata_value(trailing, RETRY_AFTER_KEY)
    if hint is not None:
        with contextlib.suppress(ValueError):
            retry_ms = int(hint.decode() if isinstance(hint, bytes) else hint)
    # A reason that only repeats the code adds nothing to the table.
    key = name if reason in (None, name) else f"{name}/{reason}"
    return key, retry_ms


def merge_counts(target: dict[str, int], source: dict[str, int]) -> dict[str, int]:
    for key, count in source.items():
        target[key] = target.get(key, 0) + count
    return target


def format_counts(counts: dict[str, int]) -> str:
    """`INTERNAL 8, UNAVAILABLE 3` (largest first), or `none`."""
    shown = [f"{key} {count:,}" for key, count in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]
    return ", ".join(shown) if shown else "none"
