"""`make load`: a fleet of portals against a real `fleet-server` on loopback, about two minutes.

Phases, each bounded in count and time: set-up (fresh database, server, customers, one reference
snapshot per portal); the baseline (one stream alone); the fleet (live portals and the operator,
then back-fills join); a few operator rounds on the quiet server over the data the back-fills
left; the ramp of concurrent streams; then the server is stopped and the database counted.
Prints one table and writes bench/load.json. A bar that is not met is printed as FAIL; the exit
status is 0 unless `--strict` (or the harness itself broke: 2).
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import os
import platform
import sys
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.load import ledger, report
from bench.load.fleet import ClientFleet
from bench.load.plan import Plan
from bench.load.rss import RssSampler
from bench.load.stats import format_counts
from bench.load.world import World

_LOGGER = logging.getLogger("bench.load")
RESULTS = Path(__file__).resolve().parent.parent / "load.json"
# Answers of a phase may come this long after its own bounds (pipes, process start-up).
_ANSWER_MARGIN_S = 30.0
_START_DELAY_S = 1.5  # every process gets the command before the common start time
_QUIET_S = 20.0  # bound of the quiet operator rounds
# After the fleet phase and after each ramp step the server must answer again within this long, or
# it is restarted, so the next phase measures the server rather than the previous phase's debris.
_RECOVERY_AFTER_FLEET_S = 5.0
_RECOVERY_AFTER_STEP_S = 3.0
_FINAL_STOP_S = 5.0
_RESTART_STOP_S = 2.0  # a stuck server is killed: its open transactions roll back


def _plan(args: argparse.Namespace) -> Plan:
    overrides: dict[str, Any] = {"workers": args.workers}
    for name in ("clients", "portals", "backfills", "fleet_s"):
        if getattr(args, name) is not None:
            overrides[name] = getattr(args, name)
    if args.ramp is not None:
        overrides["ramp"] = tuple(int(n) for n in args.ramp.split(",") if n.strip())
    if "fleet_s" in overrides and not args.quick:
        overrides["live_alone_s"] = min(Plan.live_alone_s, overrides["fleet_s"] / 4)
    return Plan.quick_plan(**overrides) if args.quick else Plan(**overrides)


def _phase(results: dict[str, Any], name: str, step: Callable[[], None]) -> None:
    """Run one phase; a failure is recorded and the run goes on to the table."""
    started = time.perf_counter()
    print(f"… {name}", file=sys.stderr, flush=True)
    try:
        step()
    except Exception as exc:
        _LOGGER.debug("%s failed", name, exc_info=True)
        results["errors"].append(f"{name}: {''.join(traceback.format_exception(exc)).strip()}")
    print(f"  {name}: {time.perf_counter() - started:.1f}s", file=sys.stderr, flush=True)


def _phase_groups(results: dict[str, Any], name: str, answers: dict[int, dict[str, Any]]) -> Any:
    groups, problems = report.summarise_phase(answers)
    results["errors"].extend(f"{name}: {p}" for p in problems)
    harness = groups.get("harness", {}).get("statuses")
    if harness:  # a coroutine of the harness itself failed; its traceback is on stderr
        results["errors"].append(f"{name}: {format_counts(harness)}")
    return groups


def _generator(plan: Plan, answers: dict[int, dict[str, Any]], fleet: dict[str, Any]) -> dict[str, Any]:
    shares = [
        f"{100 * answers[i]['cpu_s'] / answers[i]['wall_s']:.0f}"
        for i in sorted(answers)
        if "cpu_s" in answers[i] and answers[i]["wall_s"] > 0
    ]
    lag = fleet["loop_lag"]["p99"]
    return {
        "cpu_percent": shares,
        "loop_lag_p99": lag,
        "kept_up": lag is not None and lag <= report.GENERATOR_LAG_BAR_S,
        "what": (
            f"back-fill, operator, {plan.live_clients} x ~{len(plan.live_share(2))} portals; "
            f"CPU % {'/'.join(shares)}; lag p99 {report.seconds_text(lag)} s; live sends "
            f"{fleet['live_attempts']:,} (~{fleet['live_scheduled']:,} planned)"
        ),
    }


def run(plan: Plan, log_path: Path) -> dict[str, Any]:
    results: dict[str, Any] = {"plan": plan.as_dict(), "errors": [], "ramp": [], "recovery": []}
    received_base = int(time.time()) - 60
    started = time.perf_counter()
    print("… set-up: database, fleet-server, customers, client processes", file=sys.stderr, flush=True)
    world = World.create(log_path)
    results["database"] = world.database_kind
    sampler: RssSampler | None = None
    fleet: ClientFleet | None = None
    entries: list[ledger.LedgerEntry] = []
    try:
        world.start_server(plan.workers)
        sampler = RssSampler(world.server_pid).start()
        tokens = world.create_customers(plan.all_codes())
        fleet = ClientFleet(plan, world.target, world.admin_token, tokens, received_base)
        clients = fleet
        print(f"  set-up: {time.perf_counter() - started:.1f}s", file=sys.stderr, flush=True)

        def setup() -> None:
            groups = _phase_groups(results, "setup", clients.everyone({"op": "setup"}, 300))
            results["setup"] = {
                "customers": len(tokens),
                "seconds": time.perf_counter() - started,
                "statuses": report.errors_in(groups, "setup"),
            }

        def baseline(key: str) -> None:
            sampler_phase("baseline")
            answers = clients.ask(
                {0: {"op": "baseline"}}, plan.baseline_s + plan.deadline_s + _ANSWER_MARGIN_S
            )
            results[key] = report.baseline_figures(_phase_groups(results, "baseline", answers))

        def quiet() -> None:
            sampler_phase("quiet")
            command = {"op": "quiet_operator", "cycles": 3, "seconds": _QUIET_S, "target": world.target}
            answers = clients.ask({1: command}, _QUIET_S + _ANSWER_MARGIN_S)
            results["quiet_operator"] = report.quiet_operator_figures(
                _phase_groups(results, "quiet", answers)
            )

        def fleet_phase() -> None:
            sampler_phase("fleet")
            start_at = time.time() + _START_DELAY_S
            backfill_at, end_at = start_at + plan.live_alone_s, start_at + plan.fleet_s
            command = {"op": "fleet", "start_at": start_at, "backfill_at": backfill_at, "end_at": end_at}
            answers = clients.everyone(command, end_at - time.time() + plan.grace_s + _ANSWER_MARGIN_S)
            groups = _phase_groups(results, "fleet", answers)
            base = (results.get("baseline") or {}).get("rows_per_s", 0.0)
            results["fleet"] = report.fleet_figures(groups, plan, backfill_at, end_at, base)
            results["generator"] = _generator(plan, answers, results["fleet"])

        def ramp(step: int) -> None:
            sampler_phase("ramp")
            codes = plan.ramp_codes(step)
            start_at = time.time() + _START_DELAY_S + step / 1000  # room to open the channels
            commands = {
                i: {
                    "op": "ramp",
                    "step": step,
                    "codes": codes[i :: plan.clients],
                    "start_at": start_at,
                    "target": world.target,
                }
                for i in range(plan.clients)
            }
            bound = start_at - time.time() + plan.deadline_s + plan.grace_s + _ANSWER_MARGIN_S
            groups = _phase_groups(results, f"ramp {step}", clients.ask(commands, bound))
            results["ramp"].append(report.ramp_figures(step, groups))

        def sampler_phase(name: str) -> None:
            if sampler is not None:
                sampler.phase = name

        def recover(after: str, wait_s: float) -> None:
            seconds = world.responsive_within(wait_s)
            results["recovery"].append({"after": after, "seconds": seconds, "restarted": seconds is None})
            if seconds is None:
                print(f"  server not answering {wait_s:.0f}s after {after}: restarting it", file=sys.stderr)
                world.stop_server(_RESTART_STOP_S)
                world.start_server(plan.workers)
                if sampler is not None:
                    sampler.root = world.server_pid

        _phase(results, "reference snapshots", setup)
        _phase(results, "baseline", functools.partial(baseline, "baseline"))
        _phase(results, f"fleet ({plan.fleet_s:.0f}s)", fleet_phase)
        _phase(results, "recovery", functools.partial(recover, "fleet", _RECOVERY_AFTER_FLEET_S))
        _phase(results, "baseline again", functools.partial(baseline, "baseline_after"))
        if results.get("fleet"):
            results["fleet"] = report.with_yardstick(
                results["fleet"], results.get("baseline"), results.get("baseline_after")
            )
        _phase(results, "quiet operator", quiet)
        for index, step in enumerate(plan.ramp):
            if index:
                after = f"ramp {plan.ramp[index - 1]}"
                _phase(results, "recovery", functools.partial(recover, after, _RECOVERY_AFTER_STEP_S))
            _phase(results, f"ramp {step}", functools.partial(ramp, step))
        for answer in clients.everyone({"op": "ledger"}, 60).values():
            entries.extend(tuple(e) for e in answer.get("batches", []))
    finally:
        if fleet is not None:
            fleet.stop()
        # Stopped before counting: a batch still being written when its stream was cut is either
        # committed or rolled back by now, never half-way.
        results["server"] = {"exit_code": world.stop_server(_FINAL_STOP_S)}
        if sampler is not None:
            results["rss"] = sampler.stop()
    try:
        print("… counting the database", file=sys.stderr, flush=True)
        results["check"] = ledger.account(entries, *ledger.read_database(world.url, received_base))
    except Exception as exc:
        results["errors"].append(f"final count: {exc!r}")
    finally:
        results["server"]["internal_logged"] = world.server_log_count("internal error correlation_id")
        results["server"]["orphaned_commits_logged"] = world.server_log_count(
            "unacknowledged batch committed after its stream ended"
        )
        results["server"]["log"] = str(log_path)
        world.close()
    return results


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.load",
        description="A fleet of portals against a real fleet-server on loopback; one table and a JSON file.",
    )
    parser.add_argument(
        "--quick", action="store_true", help="a smoke run under a minute (a tenth of the fleet)"
    )
    parser.add_argument("--workers", type=int, default=1, help="fleet-server serve --workers N (1)")
    parser.add_argument("--clients", type=int, help="client processes, at least 3 (4; quick 3)")
    parser.add_argument("--portals", type=int, help="live portals (300; quick 30)")
    parser.add_argument("--backfills", type=int, help="back-filling portals (10; quick 2)")
    parser.add_argument(
        "--fleet-seconds", dest="fleet_s", type=float, help="fleet phase length (40; quick 10)"
    )
    parser.add_argument("--ramp", help="concurrent streams per ramp step (20,100,300,1000; quick 20)")
    parser.add_argument("--output", type=Path, default=RESULTS, help=f"results file ({RESULTS.name})")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a bar is not met")
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING)
    args = _parser().parse_args(argv)
    try:
        plan = _plan(args)
    except ValueError as exc:
        print(f"bench.load: {exc}", file=sys.stderr)
        return 2
    started = time.perf_counter()
    log_path = args.output.with_suffix(".server.log")
    results = run(plan, log_path)
    results["meta"] = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}",
        "seconds": round(time.perf_counter() - started, 1),
    }
    args.output.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(report.render(results))
    for problem in results["errors"]:
        print(f"\nharness problem: {problem}")
    print(
        f"\n{plan.workers} server worker(s), {results.get('database')}, {results['meta']['seconds']}s; "
        f"written to {args.output}; server log {log_path}"
    )
    if results["errors"]:
        return 2
    return 1 if args.strict and not all(report.verdicts(results).values()) else 0


if __name__ == "__main__":
    sys.exit(main())
