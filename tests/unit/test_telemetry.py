"""The metrics' small rules: a call's final status, the reason read back, addresses, the workers' folder."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2

from fleet_server.telemetry.exposition import MetricsAddressError, WorkerMetricsFolder, parse_listen
from fleet_server.telemetry.grpc_metrics import NO_REASON, final_code, grpc_type, sent_reason


class _Context:
    def __init__(self, code: Any = None, remaining: float | None = None, trailers: Any = ()) -> None:
        self._code = code
        self._remaining = remaining
        self._trailers = trailers

    def code(self) -> Any:
        return self._code

    def time_remaining(self) -> float | None:
        return self._remaining

    def trailing_metadata(self) -> Any:
        return self._trailers


def test_the_final_code_is_what_the_call_ended_with() -> None:
    assert final_code(_Context(), None) is grpc.StatusCode.OK
    assert final_code(_Context(grpc.StatusCode.NOT_FOUND), RuntimeError()) is grpc.StatusCode.NOT_FOUND
    assert final_code(_Context(), asyncio.CancelledError()) is grpc.StatusCode.CANCELLED
    assert final_code(_Context(remaining=0.0), asyncio.CancelledError()) is grpc.StatusCode.DEADLINE_EXCEEDED
    assert final_code(_Context(remaining=5.0), asyncio.CancelledError()) is grpc.StatusCode.CANCELLED
    assert final_code(_Context(), ValueError()) is grpc.StatusCode.UNKNOWN


def _details(reason: str) -> bytes:
    packed = any_pb2.Any()
    packed.Pack(error_details_pb2.ErrorInfo(reason=reason, domain="fleet.v1"))
    encoded: bytes = status_pb2.Status(code=16, message="no", details=[packed]).SerializeToString()
    return encoded


def test_the_reason_is_read_back_from_the_status_sent() -> None:
    trailers = (("retry-after-ms", "1000"), ("grpc-status-details-bin", _details("TOKEN_UNKNOWN")))
    assert sent_reason(_Context(trailers=trailers)) == "TOKEN_UNKNOWN"
    assert sent_reason(_Context(trailers=None)) == NO_REASON
    assert sent_reason(_Context(trailers=(("grpc-status-details-bin", b"\xff\x00garbage"),))) == NO_REASON


def test_grpc_type_names_the_four_shapes_as_go_grpc_prometheus_does() -> None:
    assert [grpc_type(a, b) for a, b in ((False, False), (True, False), (False, True), (True, True))] == [
        "unary",
        "client_stream",
        "server_stream",
        "bidi_stream",
    ]


def test_metrics_listen_is_host_and_port() -> None:
    assert parse_listen("127.0.0.1:9464") == ("127.0.0.1", 9464)
    assert parse_listen("[::1]:9464") == ("::1", 9464)
    for bad in ("9464", "localhost", "host:port", ":9464", "127.0.0.1:70000"):
        with pytest.raises(MetricsAddressError):
            parse_listen(bad)


def test_the_workers_folder_is_emptied_of_an_earlier_runs_files(tmp_path: Path) -> None:
    folder = tmp_path / "metrics"
    folder.mkdir()
    (folder / "counter_123.db").write_bytes(b"old")
    (folder / "README").write_text("kept: not a metrics file")
    prepared = WorkerMetricsFolder.prepare(folder)
    assert sorted(p.name for p in folder.iterdir()) == ["README"]
    prepared.remove()
    assert folder.exists()  # a configured folder is the operator's

    temporary = WorkerMetricsFolder.prepare(None)
    assert temporary.path.is_dir()
    temporary.remove()
    assert not temporary.path.exists()
