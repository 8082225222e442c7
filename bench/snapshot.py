"""Snapshot scaling: apply time of a 10,000-device snapshot / a 1,000-device one, through the server."""

from __future__ import annotations

import statistics
import time
from typing import Any

from fleet.v1 import ingest_service_pb2 as ipb
from fleet.v1 import resources_pb2

from bench.dataset import bearer, ingest_stub

SITES = 20


def _push_devices(target: str, token: str, devices: int) -> float:
    channel, stub = ingest_stub(target)
    meta = bearer(token)
    stub.PushSites(
        iter(
            [
                ipb.PushSitesRequest(
                    sites=[resources_pb2.Site(id=s, name=f"Site {s}") for s in range(1, SITES + 1)]
                )
            ]
        ),
        metadata=meta,
    )
    # Pre-built messages of 1,000 devices each, as a pusher would stream them.
    requests = [
        ipb.PushDevicesRequest(
            devices=[
                resources_pb2.Device(
                    id=d, site_id=d % SITES + 1, name=f"Meter {d}", serial_number=f"SN{d:08d}", kind="meter"
                )
                for d in range(first, min(first + 1000, devices + 1))
            ]
        )
        for first in range(1, devices + 1, 1000)
    ]
    started = time.perf_counter()
    reply = stub.PushDevices(iter(requests), metadata=meta)
    elapsed = time.perf_counter() - started
    channel.close()
    if reply.summary.inserted != devices:
        raise RuntimeError(f"snapshot inserted {reply.summary.inserted} of {devices}")
    return elapsed


def measure(env: Any, rounds: int = 3) -> dict[str, Any]:
    ratios: list[float] = []
    small: list[float] = []
    large: list[float] = []
    _push_devices(env.target, env.customer("SNAP_WARM"), 1000)
    for r in range(rounds):
        s = _push_devices(env.target, env.customer(f"SNAP_S{r}"), 1_000)
        big = _push_devices(env.target, env.customer(f"SNAP_L{r}"), 10_000)
        small.append(s)
        large.append(big)
        ratios.append(big / s)
    return {
        "median": statistics.median(ratios),
        "min": min(ratios),
        "max": max(ratios),
        "rounds": rounds,
        "seconds_1k": statistics.median(small),
        "seconds_10k": statistics.median(large),
        "what": "PushDevices of new snapshots, 1,000 vs 10,000 devices, RPC time",
    }
