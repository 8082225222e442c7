"""The real `fleet-server` process: grpcurl and buf curl through reflection, signals, refusals, workers."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from datetime import datetime
from pathlib import Path

import grpc
import pytest
from fleet.v1 import admin_service_pb2, admin_service_pb2_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.support.process import ServerProcess, cli, free_port, wait_serving

pytestmark = pytest.mark.e2e

# The contract's RPCs (the paged lists included), written out by hand so a lost RPC fails here.
CONTRACT_METHODS = {
    "fleet.v1.FleetIngestService/PushSites",
    "fleet.v1.FleetIngestService/PushDevices",
    "fleet.v1.FleetIngestService/PushMunicipalities",
    "fleet.v1.FleetIngestService/PushTariffs",
    "fleet.v1.FleetIngestService/PushMeasurements",
    "fleet.v1.FleetAdminService/CreateCustomer",
    "fleet.v1.FleetAdminService/ListCustomers",
    "fleet.v1.FleetAdminService/GetCustomer",
    "fleet.v1.FleetAdminService/RotateCustomerToken",
    "fleet.v1.FleetAdminService/ActivateCustomer",
    "fleet.v1.FleetAdminService/DeactivateCustomer",
    "fleet.v1.FleetAdminService/DeleteCustomer",
    "fleet.v1.FleetQueryService/GetCustomerDetail",
    "fleet.v1.FleetQueryService/ListSites",
    "fleet.v1.FleetQueryService/ListDevices",
    "fleet.v1.FleetQueryService/ListMunicipalities",
    "fleet.v1.FleetQueryService/ListTariffs",
    "fleet.v1.FleetQueryService/QueryMeasurements",
    "fleet.v1.FleetQueryService/SummarizeFleet",
    "fleet.v1.FleetQueryService/ComputeCosts",
    "fleet.v1.FleetQueryService/GetFleetHealth",
    "fleet.v1.FleetQueryService/ListSilentDevices",
    "fleet.v1.FleetQueryService/GetFleetStorage",
}


def _run(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False)


def test_grpcurl_lists_services_through_reflection(fleet_server):
    result = _run(cli("grpcurl"), "-plaintext", fleet_server.target, "list")
    assert result.returncode == 0, result.stderr
    assert set(result.stdout.split()) == {
        "fleet.v1.FleetAdminService",
        "fleet.v1.FleetIngestService",
        "fleet.v1.FleetQueryService",
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
    }


def test_grpcurl_describes_the_ingest_service(fleet_server):
    result = _run(
        cli("grpcurl"), "-plaintext", fleet_server.target, "describe", "fleet.v1.FleetIngestService"
    )
    assert result.returncode == 0, result.stderr
    assert "fleet.v1.FleetIngestService is a service" in result.stdout
    assert (
        "rpc PushMeasurements ( stream .fleet.v1.PushMeasurementsRequest ) "
        "returns ( stream .fleet.v1.PushMeasurementsResponse );"
    ) in result.stdout
    for rpc in ("PushSites", "PushDevices", "PushMunicipalities", "PushTariffs"):
        assert f"rpc {rpc} ( stream .fleet.v1.{rpc}Request ) returns ( .fleet.v1.{rpc}Response );" in (
            result.stdout
        )


def test_grpcurl_calls_the_admin_service_with_the_admin_token(fleet_server, admin_token):
    base = (cli("grpcurl"), "-plaintext", "-d", "{}")
    method = "fleet.v1.FleetAdminService/ListCustomers"
    allowed = _run(*base, "-H", f"authorization: Bearer {admin_token}", fleet_server.target, method)
    assert allowed.returncode == 0, allowed.stderr
    refused = _run(*base, fleet_server.target, method)
    assert refused.returncode != 0
    assert "Unauthenticated" in refused.stderr


@pytest.mark.parametrize("protocol", [None, "grpc-v1", "grpc-v1alpha"])
def test_buf_curl_lists_every_rpc_of_the_contract(fleet_server, protocol):
    args = [cli("buf"), "curl", "--protocol", "grpc", "--http2-prior-knowledge", "--list-methods"]
    if protocol:
        args += ["--reflect-protocol", protocol]
    result = _run(*args, f"http://{fleet_server.target}")
    assert result.returncode == 0, result.stderr
    methods = set(result.stdout.split())
    assert methods >= CONTRACT_METHODS
    assert {m for m in methods if m.startswith("fleet.")} == CONTRACT_METHODS


def _log_time(output: str, event: str) -> datetime:
    match = re.search(rf"^(\S+ \S+) .*{re.escape(event)}", output, re.MULTILINE)
    assert match, output
    return datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S,%f")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_during_an_open_stream_flips_health_and_exits_within_the_grace(database_url, sig):
    grace = 1.0
    server = ServerProcess(database_url, "--shutdown-grace-s", str(grace)).start()
    try:
        with grpc.insecure_channel(server.target) as channel:
            watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(), timeout=30)
            assert next(watch).status == health_pb2.HealthCheckResponse.SERVING
            assert server.proc is not None
            server.proc.send_signal(sig)
            assert next(watch).status == health_pb2.HealthCheckResponse.NOT_SERVING
            # Without a grace limit the open Watch would keep the process up and this would time out.
            code = server.wait(timeout=grace + 15)
    finally:
        server.kill()
    assert code == 0, server.output
    stopping = _log_time(server.output, f"shutting down (grace {grace:.1f}s)")
    stopped = _log_time(server.output, "fleet_server.server stopped")
    held = (stopped - stopping).total_seconds()
    assert grace - 0.1 <= held <= grace + 2.0, f"the open stream was held {held:.2f}s, grace {grace}s"


def test_plaintext_on_a_non_loopback_address_is_refused(database_url):
    result = _run(cli("fleet-server"), "serve", "--listen", f"0.0.0.0:{free_port()}")
    assert result.returncode == 2
    assert "refusing plaintext on non-loopback address 0.0.0.0" in result.stderr
    assert "--insecure" in result.stderr


def test_insecure_allows_plaintext_on_all_interfaces(database_url):
    port = free_port()
    with ServerProcess(database_url, "--listen", f"0.0.0.0:{port}", "--insecure", port=port) as server:
        assert server.proc is not None
        assert server.proc.poll() is None  # wait_serving reached it through 127.0.0.1


def _answering_workers(target: str, log: Path, workers: set[str], deadline_s: float = 60) -> set[str]:
    """Call on fresh TCP connections until every worker has answered one (or the deadline passes).

    SO_REUSEPORT picks a worker per connection; the access log line carries the worker's pid.
    """
    answered: set[str] = set()
    deadline = time.monotonic() + deadline_s
    while answered != workers and time.monotonic() < deadline:
        with grpc.insecure_channel(target, options=[("grpc.use_local_subchannel_pool", 1)]) as channel:
            stub = admin_service_pb2_grpc.FleetAdminServiceStub(channel)
            with pytest.raises(grpc.RpcError) as err:
                stub.ListCustomers(admin_service_pb2.ListCustomersRequest(), timeout=5)
            assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
        answered = set(re.findall(r"pid=(\d+) fleet_server\.access rpc ", log.read_text()))
    return answered


def test_two_workers_share_the_port_and_stop_on_sigint(database_url, tmp_path):
    port = free_port()
    log = tmp_path / "server.log"
    env = {**os.environ, "FLEET_DATABASE_URL": database_url}
    args = [cli("fleet-server"), "serve", "--listen", f"127.0.0.1:{port}", "--workers", "2"]
    with log.open("w") as sink:
        proc = subprocess.Popen([*args, "--shutdown-grace-s", "1"], env=env, stdout=sink, stderr=sink)
    try:
        wait_serving(f"127.0.0.1:{port}")
        started = re.search(r"started 2 workers on \S+: (\d+), (\d+)", log.read_text())
        assert started, log.read_text()
        workers = set(started.groups())
        assert _answering_workers(f"127.0.0.1:{port}", log, workers) == workers
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    output = log.read_text()
    assert code == 0, output
    stopped = set(re.findall(r"pid=(\d+) fleet_server\.server stopped", output))
    assert stopped == workers, output
    assert "all workers stopped" in output
    for pid in workers:
        assert not Path(f"/proc/{pid}").exists()


def test_sigterm_while_workers_are_still_starting_is_a_clean_stop(database_url, tmp_path):
    log = tmp_path / "server.log"
    env = {**os.environ, "FLEET_DATABASE_URL": database_url}
    args = [cli("fleet-server"), "serve", "--listen", f"127.0.0.1:{free_port()}", "--workers", "2"]
    with log.open("w") as sink:
        proc = subprocess.Popen(args, env=env, stdout=sink, stderr=sink)
    try:
        deadline = time.monotonic() + 30
        while "started 2 workers" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.01)
        proc.send_signal(signal.SIGTERM)  # the workers are still importing
        code = proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    output = log.read_text()
    assert code == 0, output
    assert "all workers stopped" in output
    assert "Traceback" not in output
