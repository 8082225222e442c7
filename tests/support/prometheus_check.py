"""`make check-prometheus`: the alert rules under promtool, then a real Prometheus scraping a real fleet.

1. `promtool check rules` and `promtool test rules` on docs/prometheus-rules*.yml;
2. `fleet-server serve --workers 2 --metrics-listen` on loopback (an embedded PostgreSQL in a
   temporary folder), a real `prometheus` scraping it every 2 s with the rules loaded;
3. a minute of traffic: a portal pushing snapshots and measurement batches on fresh
   connections (so both workers serve), and callers with an unknown token;
4. a few series read back through Prometheus's HTTP API, compared with what was sent.

Not part of `make test`: it needs promtool and prometheus (Debian's `prometheus` package; the
make target installs it when missing) and takes about a minute and a half.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
from fleet.v1 import (
    admin_service_pb2,
    admin_service_pb2_grpc,
    ingest_service_pb2,
    ingest_service_pb2_grpc,
    resources_pb2,
)

from fleet_server.domain.tokens import TokenKind, mint
from tests.support.clients import bearer
from tests.support.measurements import reading, request
from tests.support.process import cli, free_port, wait_serving

DOCS = Path(__file__).resolve().parents[2] / "docs"
RULES = DOCS / "prometheus-rules.yml"
RULE_TESTS = DOCS / "prometheus-rules.test.yml"
TRAFFIC_S = float(os.environ.get("FLEET_PROMCHECK_SECONDS", "60"))
CUSTOMER = "PROMCHECK"


def _say(text: str) -> None:
    print(text, flush=True)


def _run(*argv: str) -> None:
    _say("$ " + " ".join(argv))
    subprocess.run(argv, check=True)


@dataclass
class Sent:
    measurement_calls: int = 0
    rows: int = 0
    site_pushes: int = 0
    refused: int = 0


@contextlib.contextmanager
def _process(
    argv: list[str], log: Path, env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    with open(log, "wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


def _query(api: str, expr: str) -> list[dict[str, object]]:
    url = f"{api}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=10) as reply:
        body = json.load(reply)
    if body.get("status") != "success":
        raise RuntimeError(f"{expr}: {body}")
    result: list[dict[str, object]] = body["data"]["result"]
    return result


def _scalar(api: str, expr: str) -> float | None:
    result = _query(api, expr)
    if not result:
        return None
    value = result[0]["value"]
    assert isinstance(value, list)
    return float(value[1])


def _wait_for(what: str, check: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(1)


def _create_customer(target: str, admin_token: str) -> str:
    with grpc.insecure_channel(target) as channel:
        stub = admin_service_pb2_grpc.FleetAdminServiceStub(channel)
        reply = stub.CreateCustomer(
            admin_service_pb2.CreateCustomerRequest(code=CUSTOMER, name="Prometheus check"),
            metadata=bearer(admin_token),
            timeout=30,
        )
    return str(reply.token)


def _traffic(target: str, token: str, seconds: float) -> Sent:
    """Pushes and refusals for `seconds`, each on a fresh connection so both workers serve."""
    sent = Sent()
    started = datetime.now(UTC)
    deadline = time.monotonic() + seconds
    step = 0
    while time.monotonic() < deadline:
        with grpc.insecure_channel(target) as channel:
            stub = ingest_service_pb2_grpc.FleetIngestServiceStub(channel)
            if step % 10 == 0:
                sites = [resources_pb2.Site(id=i, name=f"Site {i}", timezone="UTC") for i in (1, 2)]
                push = ingest_service_pb2.PushSitesRequest(sites=sites)
                stub.PushSites(iter([push]), metadata=bearer(token), timeout=30)
                sent.site_pushes += 1
            moment = started - timedelta(minutes=step + 1)
            batch = [reading(device, moment, 1.0 + step) for device in (1, 2, 3, 4)]
            acks = list(stub.PushMeasurements(iter([request(1, batch)]), metadata=bearer(token), timeout=30))
            sent.measurement_calls += 1
            sent.rows += sum(ack.accepted for ack in acks)
            try:
                stub.PushSites(iter([]), metadata=bearer(mint(TokenKind.CUSTOMER)), timeout=30)
            except grpc.RpcError as error:
                if error.code() is grpc.StatusCode.UNAUTHENTICATED:
                    sent.refused += 1
        step += 1
        time.sleep(0.5)
    return sent


def _prometheus_config(folder: Path, metrics_port: int) -> Path:
    config = folder / "prometheus.yml"
    config.write_text(
        "global:\n"
        "  scrape_interval: 2s\n"
        "  evaluation_interval: 2s\n"
        "rule_files:\n"
        f"  - {RULES}\n"
        "scrape_configs:\n"
        "  - job_name: fleet-server\n"
        "    static_configs:\n"
        f"      - targets: ['127.0.0.1:{metrics_port}']\n"
    )
    return config


def _checks(api: str, sent: Sent) -> list[tuple[str, str, bool]]:
    """(expression, what it returned against what was expected, ok) for each series checked."""
    results: list[tuple[str, str, bool]] = []

    def check(expr: str, expected: float | None, *, at_least: bool = False) -> None:
        got = _scalar(api, expr)
        ok = got is not None and expected is not None and (got >= expected if at_least else got == expected)
        results.append((expr, f"{got} ({'>=' if at_least else '=='} {expected})", ok))

    check('up{job="fleet-server"}', 1)
    check("count(fleet_process_resident_memory_bytes)", 2)
    check(
        'sum(grpc_server_handled_total{grpc_method="PushMeasurements",grpc_code="OK"})',
        sent.measurement_calls,
    )
    check(
        'sum(grpc_server_msg_received_total{grpc_method="PushMeasurements",grpc_type="bidi_stream"})',
        sent.measurement_calls,
    )
    check(
        f'sum(fleet_ingest_rows_total{{customer="{CUSTOMER}",resource="measurements",outcome="accepted"}})',
        sent.rows,
    )
    check(f'sum(fleet_ingest_rows_total{{customer="{CUSTOMER}",resource="sites",outcome="inserted"}})', 2)
    check(
        f'sum(fleet_ingest_rows_total{{customer="{CUSTOMER}",resource="sites",outcome="unchanged"}})',
        2 * (sent.site_pushes - 1),
    )
    check('sum(fleet_auth_refusals_total{reason="TOKEN_UNKNOWN"})', sent.refused)
    check(f'max(fleet_customer_active{{customer="{CUSTOMER}"}})', 1)
    last_push = f'time() - max(fleet_last_push_timestamp_seconds{{customer="{CUSTOMER}"}})'
    age = _scalar(api, last_push)
    results.append((last_push, f"{age} (< 30)", age is not None and age < 30))
    check(
        'sum(rate(grpc_server_started_total{grpc_service="fleet.v1.FleetIngestService"}[30s])) > 0',
        0,
        at_least=True,
    )
    check('sum(fleet_db_pool_connections{database="primary"})', 20)
    with urllib.request.urlopen(f"{api}/api/v1/rules", timeout=10) as reply:
        groups = json.load(reply)["data"]["groups"]
    rules = [rule for group in groups for rule in group["rules"]]
    healthy = [rule["name"] for rule in rules if rule.get("health") == "ok"]
    loaded = bool(rules) and len(healthy) == len(rules)
    results.append(("/api/v1/rules", f"{len(healthy)} of {len(rules)} rules evaluated without error", loaded))
    firing = _query(api, 'ALERTS{alertstate="firing"}')
    results.append(('ALERTS{alertstate="firing"}', f"{len(firing)} firing", not firing))
    return results


def main() -> int:
    for tool in ("promtool", "prometheus"):
        if shutil.which(tool) is None:
            _say(f"{tool} not found: `make check-prometheus` installs Debian's prometheus package")
            return 2
    _run("promtool", "check", "rules", str(RULES))
    _run("promtool", "test", "rules", str(RULE_TESTS))

    folder = Path(tempfile.mkdtemp(prefix="fleet-promcheck-"))
    grpc_port, metrics_port, prometheus_port = free_port(), free_port(), free_port()
    target = f"127.0.0.1:{grpc_port}"
    api = f"http://127.0.0.1:{prometheus_port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLEET_")}
    env["FLEET_DATA_DIR"] = str(folder / "data")
    env["FLEET_LOG_LEVEL"] = "WARNING"
    server_argv = [
        cli("fleet-server"),
        "serve",
        "--listen",
        target,
        "--workers",
        "2",
        "--metrics-listen",
        f"127.0.0.1:{metrics_port}",
        "--bootstrap-admin-token",
    ]
    prometheus_argv = [
        "prometheus",
        f"--config.file={_prometheus_config(folder, metrics_port)}",
        f"--storage.tsdb.path={folder / 'tsdb'}",
        f"--web.listen-address=127.0.0.1:{prometheus_port}",
        "--log.level=warn",
    ]
    try:
        _say("$ " + " ".join(server_argv))
        with _process(server_argv, folder / "fleet-server.log", env) as server:
            wait_serving(target, timeout=120)
            token = _create_customer(target, (folder / "data" / "admin-token").read_text().strip())
            _say("$ " + " ".join(prometheus_argv))
            with _process(prometheus_argv, folder / "prometheus.log"):
                _wait_for("prometheus to scrape fleet-server", lambda: _ready(api))
                _say(
                    f"traffic for {TRAFFIC_S:.0f} s: pushes on fresh connections, callers with unknown tokens"
                )
                sent = _traffic(target, token, TRAFFIC_S)
                _say(f"sent: {sent}")
                time.sleep(6)  # three scrapes after the last call, and a rule evaluation
                results = _checks(api, sent)
            server.terminate()
            server.wait(60)
    except Exception:
        for log in ("fleet-server.log", "prometheus.log"):
            path = folder / log
            if path.exists():
                _say(f"--- {log} (tail)\n" + "\n".join(path.read_text(errors="replace").splitlines()[-40:]))
        raise
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    width = max(len(expr) for expr, _, _ in results)
    for expr, got, ok in results:
        _say(f"{'ok  ' if ok else 'FAIL'} {expr.ljust(width)}  {got}")
    failed = [expr for expr, _, ok in results if not ok]
    _say(f"{len(results) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed else 0


def _ready(api: str) -> bool:
    try:
        return _scalar(api, 'up{job="fleet-server"}') == 1
    except OSError:
        return False


if __name__ == "__main__":
    sys.exit(main())
