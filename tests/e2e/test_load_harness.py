"""`make load` end to end, shrunk: the harness runs every phase against the real server and counts.

Only the harness's integrity is asserted (it finishes, every phase answers, the final count is
exact, no INTERNAL at this tiny load), never a latency: timing bars belong to `make load` itself.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]


def test_a_tiny_fleet_runs_every_phase_and_counts_exactly(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "FLEET_DATABASE_URL"}
    if os.environ.get("FLEET_TEST_DATABASE_URL"):  # a scratch database next to the test one
        env["FLEET_DATABASE_URL"] = os.environ["FLEET_TEST_DATABASE_URL"]
    output = tmp_path / "load.json"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.load",
            "--quick",
            "--portals",
            "5",
            "--backfills",
            "1",
            "--fleet-seconds",
            "4",
            "--ramp",
            "5",
            "--output",
            str(output),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    results = json.loads(output.read_text())
    assert results["errors"] == []
    assert results["baseline"]["rows"] > 0
    assert results["baseline_after"]["rows"] > 0
    yardstick = (results["baseline"]["rows_per_s"] + results["baseline_after"]["rows_per_s"]) / 2
    assert results["fleet"]["yardstick_rows_per_s"] == pytest.approx(yardstick)
    assert results["fleet"]["ratio"] == pytest.approx(results["fleet"]["rows_per_s"] / yardstick)
    assert results["fleet"]["live_attempts"] > 0
    assert results["fleet"]["backfill"]["acked"] > 0
    assert all(op["n"] > 0 for op in results["fleet"]["operator"].values())
    assert [step["answered_streams"] for step in results["ramp"]] == [5]
    check = results["check"]
    assert check["exact"], check
    assert check["acked_rows"] > 0
    assert "acked rows stored exactly once" in done.stdout
    assert (tmp_path / "load.server.log").exists()
