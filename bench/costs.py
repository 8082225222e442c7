"""Cost compute: ComputeCosts over 30 and 60 days x 50 devices of 15-minute data, through the server."""

from __future__ import annotations

import statistics
import time
from datetime import timedelta
from typing import Any

import grpc
from fleet.v1 import query_service_pb2, query_service_pb2_grpc

from bench.dataset import SERIES_START, bearer, ts


def _compute(target: str, admin_token: str, code: str, days: int) -> float:
    channel = grpc.insecure_channel(target)
    stub = query_service_pb2_grpc.FleetQueryServiceStub(channel)
    request = query_service_pb2.ComputeCostsRequest(
        codes=[code], start=ts(SERIES_START), end=ts(SERIES_START + timedelta(days=days))
    )
    started = time.perf_counter()
    reply = stub.ComputeCosts(request, metadata=bearer(admin_token), timeout=300)
    elapsed = time.perf_counter() - started
    channel.close()
    if not reply.customers or not reply.customers[0].sites:
        raise RuntimeError("ComputeCosts returned no bill")
    return elapsed


def measure(env: Any, code: str, rounds: int = 3) -> dict[str, Any]:
    _compute(env.target, env.admin_token, code, 30)  # warm-up
    thirty = [_compute(env.target, env.admin_token, code, 30) for _ in range(rounds)]
    sixty = [_compute(env.target, env.admin_token, code, 60) for _ in range(rounds)]
    t30, t60 = statistics.median(thirty), statistics.median(sixty)
    return {
        "seconds_30d": t30,
        "seconds_60d": t60,
        "ratio_60_30": t60 / t30,
        "rounds": rounds,
        "what": "ComputeCosts, 50 devices x 15-min energy_kwh, 5 sites on a 3-period TOU tariff",
    }
