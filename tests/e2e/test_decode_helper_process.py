"""The batch-decoding helper of a real server: it serves big batches and dies with its server."""

from __future__ import annotations

import os
import signal
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest
from fleet.v1 import ingest_service_pb2_grpc

from tests.support.clients import bearer
from tests.support.measurements import reading, request
from tests.support.process import ServerProcess

pytestmark = pytest.mark.e2e


def _children(pid: int) -> set[int]:
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        children = (task / "children").read_text().split()
        found.update(int(c) for c in children)
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def test_a_killed_server_takes_its_decoding_helper_with_it(database_url: str, new_customer) -> None:
    customer = new_customer("ACME")
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(days=3)
    received = datetime.now(UTC)
    # Over the helper's threshold.
    batch = request(
        1, (reading(1, start + timedelta(minutes=i), 0.5, received=received) for i in range(2_000))
    )
    with ServerProcess(database_url) as server:
        assert server.proc is not None
        with grpc.insecure_channel(server.target) as channel:
            stub = ingest_service_pb2_grpc.FleetIngestServiceStub(channel)
            acks = list(stub.PushMeasurements(iter([batch]), metadata=bearer(customer.token), timeout=60))
        assert [(a.accepted, a.duplicates) for a in acks] == [(2_000, 0)]
        helpers = _children(server.proc.pid)
        assert helpers, "a 2,000-row batch should have started the decoding helper"
        os.kill(server.proc.pid, signal.SIGKILL)
        began = time.monotonic()
        server.wait(10)  # the server's output closes: the helper does not hold it
        while any(_alive(pid) for pid in helpers) and time.monotonic() - began < 10:
            time.sleep(0.1)
        assert not any(_alive(pid) for pid in helpers), "the helper outlived its killed server"
