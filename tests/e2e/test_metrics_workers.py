"""`fleet-server serve --workers 2 --metrics-listen`: one scrape of the supervisor shows every worker."""

from __future__ import annotations

import time
import urllib.request
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from fleet.v1 import ingest_service_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families

from fleet_server.domain.tokens import TokenKind, mint
from tests.support.clients import bearer
from tests.support.measurements import reading, request
from tests.support.process import ServerProcess, free_port

pytestmark = pytest.mark.e2e


def _scrape(port: int) -> dict[str, list[tuple[dict[str, str], float]]]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
        text = reply.read().decode()
    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((sample.labels, sample.value))
    return samples


def _total(samples: dict[str, list[tuple[dict[str, str], float]]], name: str, **labels: str) -> float:
    return sum(v for found, v in samples.get(name, []) if all(found.get(k) == x for k, x in labels.items()))


def test_one_scrape_shows_all_workers_and_stale_files_are_gone(database_url, new_customer, tmp_path):
    folder = tmp_path / "metrics"
    folder.mkdir()
    (folder / "counter_999999.db").write_bytes(b"left over by an earlier run")
    acme = new_customer("ACME")
    metrics_port = free_port()
    server = ServerProcess(
        database_url,
        "--workers",
        "2",
        "--metrics-listen",
        f"127.0.0.1:{metrics_port}",
        "--metrics-dir",
        str(folder),
    )
    server.start()
    try:
        assert not (folder / "counter_999999.db").exists()
        now = datetime.now(UTC)
        pushes = 6
        for i in range(pushes):  # a channel each: the kernel spreads them over both workers
            with grpc.insecure_channel(server.target) as channel:
                stub = ingest_service_pb2_grpc.FleetIngestServiceStub(channel)
                batch = [reading(d, now - timedelta(minutes=i + 1), 1.0) for d in (1, 2, 3)]
                acks = list(
                    stub.PushMeasurements(iter([request(1, batch)]), metadata=bearer(acme.token), timeout=30)
                )
                assert acks[0].accepted == 3
                with pytest.raises(grpc.RpcError):
                    list(
                        stub.PushMeasurements(iter([]), metadata=bearer(mint(TokenKind.CUSTOMER)), timeout=30)
                    )
        deadline = time.monotonic() + 30
        while True:  # each worker samples its gauges every two seconds, from its start
            samples = _scrape(metrics_port)
            memory = samples.get("fleet_process_resident_memory_bytes", [])
            sampled = len([value for _, value in memory if value > 0]) == 2
            if sampled and _total(samples, "fleet_db_pool_connections") == 2 * 10:
                break
            assert time.monotonic() < deadline, samples
            time.sleep(0.5)
        assert len({labels["pid"] for labels, _ in memory}) == 2
        accepted = _total(samples, "fleet_ingest_rows_total", customer="ACME", outcome="accepted")
        assert accepted == 3 * pushes
        ok = _total(samples, "grpc_server_handled_total", grpc_method="PushMeasurements", grpc_code="OK")
        assert ok == pushes
        assert _total(samples, "fleet_auth_refusals_total", reason="TOKEN_UNKNOWN") == pushes
        assert acme.token not in str(samples)
    finally:
        stopped = server.terminate()  # SIGTERM to the supervisor, which stops its workers
    assert stopped == 0
    assert not any(folder.glob("gauge_live*")), list(folder.iterdir())
