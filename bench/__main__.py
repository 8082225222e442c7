"""`make bench`: every performance figure, each against a baseline measured in the same run.

Prints one table and writes bench/results.json. A bar that is not met is printed as such; the
benchmark never fails the build (these machines are shared and noisy).
"""

from __future__ import annotations

import json
import logging
import os
import platform
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text

from bench import client, cold, costs, dataset, ingest, lanes, queries, snapshot
from bench.environment import BenchEnvironment
from fleet_server.fleetctl.render import table

_LOGGER = logging.getLogger("bench")
RESULTS = Path(__file__).parent / "results.json"
QUICK = os.environ.get("FLEET_BENCH_QUICK") == "1"


def _customer_id(url: str, code: str) -> int:
    engine = create_engine(url)
    with engine.connect() as conn:
        value = conn.scalar(text("SELECT id FROM fleet.customers WHERE code = :c"), {"c": code})
    engine.dispose()
    return int(value)


def _section(name: str, fn: Callable[[], dict[str, Any]], results: dict[str, Any]) -> None:
    started = time.perf_counter()
    print(f"… {name}", file=sys.stderr, flush=True)
    try:
        results.update(fn())
    except Exception as exc:  # a broken figure must not hide the others
        _LOGGER.exception("%s failed", name)
        results[f"{name}_error"] = f"{type(exc).__name__}: {exc}"
    print(f"  {name}: {time.perf_counter() - started:.1f}s", file=sys.stderr, flush=True)


def run() -> dict[str, Any]:
    env = BenchEnvironment.create()
    results: dict[str, Any] = {}
    try:
        env.start_server()
        rounds = 2 if QUICK else 5
        steps = 400 if QUICK else 2000
        query_days = 14 if QUICK else 90

        def load_series() -> dict[str, Any]:
            token = env.customer("BENCH_Q")
            dataset.push_tou_fleet(env.target, token, devices=50)
            rows = dataset.push_series(env.target, token, devices=50, days=query_days)
            return {"series_rows": rows}

        def rollup(key: str) -> dict[str, Any]:
            return {key: queries.measure(env.url, _customer_id(env.url, "BENCH_Q"), query_days)}

        # Cold storage first: its bytes are then every relation's, with nothing else in the database.
        _section(
            "cold",
            lambda: cold.measure(
                env, devices=10 if QUICK else 50, days=45 if QUICK else 90, rounds=3 if QUICK else 5
            ),
            results,
        )
        # The rollup figure twice: with the customer alone in the database, and again after the
        # ingest rounds have filled the same partitions with two other customers' rows.
        _section("series", load_series, results)
        _section("rollup", lambda: rollup("rollup_query_ratio"), results)
        _section("ingest", lambda: ingest.measure(env, rounds=rounds, devices=50, steps=steps), results)
        _section("rollup_cotenants", lambda: rollup("rollup_query_ratio_cotenants"), results)
        _section(
            "costs",
            lambda: {"cost_compute": costs.measure(env, "BENCH_Q", rounds=1 if QUICK else 3)},
            results,
        )
        _section(
            "snapshot", lambda: {"snapshot_scaling": snapshot.measure(env, rounds=1 if QUICK else 3)}, results
        )
        _section(
            "client_build", lambda: {"client_build": client.build_rate(50_000 if QUICK else 200_000)}, results
        )
        _section("unchanged", lambda: {"unchanged_snapshot": client.unchanged_snapshot(env)}, results)
        _section(
            "lanes",
            lambda: lanes.measure(env, rows=200_000 if QUICK else 2_000_000, window_s=0.8 if QUICK else 2.0),
            results,
        )
    finally:
        env.close()
    return results


def _fmt(value: Any, spec: str = ".2f") -> str:
    return format(value, spec) if isinstance(value, int | float) else "-"


def render(results: dict[str, Any]) -> str:
    """The results as one table: figures with a bar say whether it was met, the rest are reported."""
    rows: list[tuple[str, str, str, str, str]] = []

    def ratio(name: str, key: str, bar: str, ok: Callable[[float], bool]) -> None:
        fig = results.get(key)
        if not isinstance(fig, dict):
            rows.append((name, "-", "-", bar, f"not measured: {results.get(key + '_error', 'n/a')}"))
            return
        verdict = "met" if ok(fig["median"]) else "NOT MET"
        spread = f"{_fmt(fig['min'])}..{_fmt(fig['max'])}"
        rows.append((name, _fmt(fig["median"]), spread, bar, f"{verdict} — {fig['what']}"))

    def reported(
        name: str, key: str, bar: str, value: Callable[[dict[str, Any]], tuple[str, str, str]]
    ) -> None:
        fig = results.get(key)
        if isinstance(fig, dict):
            shown, spread, verdict = value(fig)
            rows.append((name, shown, spread, bar, f"{verdict}{fig['what']}"))

    single_fig = results.get("ingest_ratio")
    single = single_fig["median"] if isinstance(single_fig, dict) else 0.0
    ratio("ingest ratio", "ingest_ratio", ">= 0.40", lambda m: m >= 0.40)
    single_low = single_fig["min"] if isinstance(single_fig, dict) else 0.0
    ratio("ingest, metrics on", "ingest_ratio_metrics_on", "within noise", lambda m: m >= single_low)
    ratio("ingest, 2 customers", "ingest_2_customers_ratio", ">= single", lambda m: m >= single)
    ratio("snapshot scaling 10k/1k", "snapshot_scaling", "<= 12", lambda m: m <= 12)
    ratio("rollup query", "rollup_query_ratio", "<= 0.2", lambda m: m <= 0.2)
    ratio("rollup query, co-tenants", "rollup_query_ratio_cotenants", "<= 0.2", lambda m: m <= 0.2)
    reported(
        "cold: bytes per reading",
        "cold_bytes_per_reading",
        "<= 4",
        lambda f: (
            f"{f['value']:.2f} B",
            f"rows {f['rows']:.1f} B ({f['rows'] / f['value']:.0f}x)",
            "met — " if f["value"] <= 4 else "NOT MET — ",
        ),
    )
    reported(
        "cold: random floats",
        "cold_random_bytes_per_reading",
        "reported",
        lambda f: (f"{f['value']:.2f} B", "-", ""),
    )
    reported(
        "cold: compress rate",
        "cold_compress_rate",
        "reported",
        lambda f: (
            f"{f['readings_per_s']:,.0f} readings/s",
            f"portal year (500 meters x 2 metrics) {f['portal_year_minutes']:.1f} min",
            "",
        ),
    )
    ratio("cold: hour query / rows", "cold_hour_query_ratio", "<= 1.0", lambda m: m <= 1.0)
    ratio("cold: raw query / rows", "cold_raw_query_ratio", "<= 1.0", lambda m: m <= 1.0)
    ratio("cold: ComputeCosts / rows", "cold_costs_ratio", "<= 1.0", lambda m: m <= 1.0)
    units = results.get("cold_unit_choice")
    if isinstance(units, dict):
        month, day = units["month"], units["day"]
        rows.append(
            (
                "cold: month unit vs day unit",
                f"{month['bytes_per_reading']:.2f} / {day['bytes_per_reading']:.2f} B",
                f"decode {month['decode_us_per_unit']:.0f} / {day['decode_us_per_unit']:.0f} us a unit, "
                f"{month['decode_ns_per_reading']:.0f} / {day['decode_ns_per_reading']:.0f} ns a reading",
                "reported",
                f"codec alone, the same readings in {month['units']:,} month units "
                f"({month['readings_per_unit']:,.0f} readings) or {day['units']:,} day units",
            )
        )
    reported(
        "unchanged snapshot",
        "unchanged_snapshot",
        "0 streams",
        lambda f: (str(f["streams"]), "-", "met — " if f["streams"] == 0 else "NOT MET — "),
    )
    reported(
        "cost compute 30d / 60d",
        "cost_compute",
        "reported (~2x)",
        lambda f: (
            f"{f['seconds_30d']:.2f}s / {f['seconds_60d']:.2f}s",
            f"60/30 = {f['ratio_60_30']:.2f}",
            "",
        ),
    )
    reported(
        "client build rate",
        "client_build",
        "reported",
        lambda f: (f"{f['rows_per_s']:,.0f} rows/s", f"build only {f['build_rows_per_s']:,.0f}", ""),
    )
    reported(
        "live lag during a back-fill",
        "live_lag_ticks",
        "p99 <= 2 ticks",
        lambda f: (
            f"p50 {_fmt(f['p50'])} / p99 {_fmt(f['p99'])} / max {_fmt(f['max'])} ticks",
            f"{f['groups']} writes, {f['unacknowledged']} unacked; "
            f"one lane would wait {_fmt(f['one_lane_ticks'], ',.0f')}",
            "met — "
            if isinstance(f["p99"], float) and f["p99"] <= 2 and not f["unacknowledged"]
            else "NOT MET — ",
        ),
    )
    reported(
        "back-fill beside live ÷ alone",
        "backfill_beside_live_ratio",
        ">= 0.90",
        lambda f: (
            _fmt(f["ratio"]),
            f"alone {_fmt(min(f['alone_windows']), ',.0f')}..{_fmt(max(f['alone_windows']), ',.0f')} rows/s; "
            f"with live rows {_fmt(f['total_ratio'])}",
            "met — " if isinstance(f["ratio"], float) and f["ratio"] >= 0.9 else "NOT MET — ",
        ),
    )
    reported(
        "baseline: binary COPY",
        "copy_rows_per_s",
        "-",
        lambda f: (f"{f['median']:,.0f} rows/s", f"{f['min']:,.0f}..{f['max']:,.0f}", ""),
    )
    return table(("figure", "value", "spread", "bar", "verdict / what"), rows)


def main() -> int:
    logging.basicConfig(level=logging.WARNING)
    started = time.perf_counter()
    results = run()
    results["meta"] = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}",
        "database": "FLEET_BENCH_DATABASE_URL"
        if os.environ.get("FLEET_BENCH_DATABASE_URL")
        else "embedded pgserver",
        "seconds": round(time.perf_counter() - started, 1),
        "quick": QUICK,
    }
    RESULTS.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(render(results))
    print(f"\nwritten to {RESULTS} in {results['meta']['seconds']}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
