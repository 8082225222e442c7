"""`fleetctl measurements … | head -3`: a reader that leaves early ends the command quietly, status 0."""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from contextlib import redirect_stdout
from datetime import UTC, datetime
from typing import Any

import pytest
from fleet.v1 import query_service_pb2 as pb
from google.protobuf import timestamp_pb2

from fleet_server.fleetctl import connection as fleetctl_connection
from fleet_server.fleetctl.main import main as fleetctl_main


class _Query:
    """Readings of device 1 for a day of hours, and the device list that names it."""

    def QueryMeasurements(
        self, request: pb.QueryMeasurementsRequest, **_: Any
    ) -> Iterator[pb.QueryMeasurementsResponse]:
        start = datetime(2025, 3, 3, tzinfo=UTC)
        points = []
        for hour in range(24):
            stamp = timestamp_pb2.Timestamp()
            stamp.FromSeconds(int(start.timestamp()) + hour * 3600)
            points.append(
                pb.MeasurementPoint(device_id=1, bucket_start=stamp, count=4, sum=1.0, min=0.2, max=0.3)
            )
        yield pb.QueryMeasurementsResponse(points=points)

    def ListDevices(self, request: pb.ListDevicesRequest, **_: Any) -> pb.ListDevicesResponse:
        return pb.ListDevicesResponse()


class _ClosedPipe(io.StringIO):
    """stdout after `head -3` went away."""

    def write(self, text: str) -> int:
        raise BrokenPipeError

    def fileno(self) -> int:
        return 1


def test_measurements_into_a_closed_pipe_end_quietly(monkeypatch: pytest.MonkeyPatch) -> None:
    connection: Any = type(
        "C", (), {"query": _Query(), "metadata": (), "timeout": 1.0, "close": lambda self: None}
    )()
    monkeypatch.setattr(fleetctl_connection, "connect", lambda args: connection)
    redirected: list[tuple[int, int]] = []
    with monkeypatch.context() as patched, redirect_stdout(_ClosedPipe()):
        patched.setattr(os, "open", lambda path, flags: 99)
        patched.setattr(os, "dup2", lambda fd, to: redirected.append((fd, to)))
        status = fleetctl_main(
            [
                "--admin-token",
                "x",
                "measurements",
                "ACME",
                "--metric",
                "energy_kwh",
                "--from",
                "2025-03-03",
                "--to",
                "2025-03-04",
            ]
        )
    assert status == 0
    assert redirected == [(99, 1)]  # stdout pointed at /dev/null for the interpreter's last flush
