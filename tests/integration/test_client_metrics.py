"""`fleet-push run --metrics-listen`: per resource backlog, last success, failures, rows sent; tick time."""

from __future__ import annotations

import io
import os
import signal
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from fleet_client.cli import Runtime, main
from fleet_client.demo import create_demo_portal
from fleet_client.metrics import PushMetrics
from fleet_client.resources import RESOURCES
from fleet_client.source import SqlSource
from tests.support.inprocess import InProcessServer
from tests.support.process import free_port


def sample(metrics: PushMetrics, name: str, **labels: str) -> float:
    found = metrics.registry.get_sample_value(name, labels)
    return 0.0 if found is None else float(found)


def test_a_capped_back_fill_reports_rows_left_then_none(
    server: InProcessServer, new_customer: Callable[..., Any], make_rig, tmp_path: Path
) -> None:
    demo = create_demo_portal(tmp_path / "demo.db", days=1)
    customer = new_customer("DEMO")
    source = SqlSource(demo.url)
    rig = make_rig(server.target, customer.token, source, max_rows_per_tick=200, batch_size=100)
    metrics = PushMetrics()

    report = rig.pusher.tick()
    metrics.record_tick(rig.pusher, report, 0.5)
    assert sample(metrics, "fleet_push_rows_sent_total", resource="measurements") == 200
    assert sample(metrics, "fleet_push_backlog_rows", resource="measurements") == demo.measurements - 200
    assert sample(metrics, "fleet_push_backlog_rows", resource="sites") == 0
    assert sample(metrics, "fleet_push_measurement_rows_total", outcome="accepted") == 200
    assert sample(metrics, "fleet_push_in_sync", resource="tariffs") == 1
    success = sample(metrics, "fleet_push_last_success_timestamp_seconds", resource="sites")
    assert success == rig.clock.now().timestamp()
    assert sample(metrics, "fleet_push_tick_seconds_count") == 1
    assert sample(metrics, "fleet_push_token_refused") == 0

    while report.backlog:
        rig.clock.advance(20)
        report = rig.pusher.tick()
        metrics.record_tick(rig.pusher, report, 0.1)
    assert sample(metrics, "fleet_push_rows_sent_total", resource="measurements") == demo.measurements
    assert sample(metrics, "fleet_push_backlog_rows", resource="measurements") == 0
    source.close()


def test_an_unreachable_server_counts_failures_and_the_backlog_from_the_portal(
    new_customer: Callable[..., Any], make_rig, tmp_path: Path
) -> None:
    demo = create_demo_portal(tmp_path / "demo.db", days=1)
    source = SqlSource(demo.url)
    rig = make_rig(f"127.0.0.1:{free_port()}", "fleet_unused", source)
    rig.pusher.client.options = type(rig.pusher.client.options)(deadline_s=1, stream_deadline_s=1)
    metrics = PushMetrics()
    report = rig.pusher.tick()
    metrics.record_tick(rig.pusher, report, 1.0)
    assert sample(metrics, "fleet_push_failures_total", resource="sites") == 1
    assert sample(metrics, "fleet_push_consecutive_failures", resource="sites") == 1
    assert sample(metrics, "fleet_push_in_sync", resource="sites") == 0
    assert sample(metrics, "fleet_push_backlog_rows", resource="sites") == 2
    assert sample(metrics, "fleet_push_backlog_rows", resource="measurements") == demo.measurements
    assert sample(metrics, "fleet_push_last_success_timestamp_seconds", resource="sites") == 0
    source.close()


def test_fleet_push_run_serves_metrics(server: InProcessServer, new_customer, tmp_path: Path) -> None:
    demo = create_demo_portal(tmp_path / "demo.db", days=1)
    customer = new_customer("DEMO")
    port = free_port()
    env = {
        "FLEET_INGEST_ENABLED": "true",
        "FLEET_SERVER": server.target,
        "FLEET_TOKEN": customer.token,
        "FLEET_SOURCE_URL": demo.url,
        "FLEET_STATE_URL": f"sqlite:///{tmp_path / 'push.db'}",
    }
    empty = tmp_path / "empty.env"  # never the working directory's .env
    empty.touch()
    argv = ["--env-file", str(empty), "run", "--interval", "30"]
    scraped: list[str] = []
    finished = threading.Event()

    def scrape_then_stop() -> None:
        """Read /metrics until the demo's readings were sent, then stop the run as SIGINT would."""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as reply:
                    text = reply.read().decode()
            except OSError:
                text = ""
            if f'fleet_push_rows_sent_total{{resource="measurements"}} {demo.measurements}.0' in text:
                scraped.append(text)
                break
            time.sleep(0.2)
        if not finished.is_set():
            os.kill(os.getpid(), signal.SIGINT)  # the pusher's own stop handler ends the run

    scraper = threading.Thread(target=scrape_then_stop)
    scraper.start()
    try:
        code = main([*argv, "--metrics-listen", f"127.0.0.1:{port}"], Runtime(env=env, out=io.StringIO()))
    finally:
        finished.set()
    scraper.join(30)
    assert code == 0
    assert scraped, "the metrics never showed the demo's readings"
    families = {f.name: f for f in text_string_to_metric_families(scraped[0])}
    assert {s.labels["resource"] for s in families["fleet_push_backlog_rows"].samples} == set(RESOURCES)
    assert customer.token not in scraped[0]
