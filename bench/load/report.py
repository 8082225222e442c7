"""From the raw results to the figures of the issue, their bars and one table.

`summarise` turns what the client processes recorded into figures (kept in bench/load.json with
the raw counts); `render` prints them with their bar and PASS/FAIL, in the table style of
`make bench`. Figures without a bar are reported.
"""

from __future__ import annotations

from typing import Any

from bench.load.plan import BAR_FLEET_RATIO, BAR_LIVE_P99_S, BAR_OPERATOR_P99_S, OPERATOR_CALLS, Plan
from bench.load.recorder import merge_groups
from bench.load.stats import format_counts, latency_summary, merge_counts
from fleet_server.fleetctl.render import table

# The generator kept up when its event loops woke up this close to on time (p99).
GENERATOR_LAG_BAR_S = 0.25
OK_STATUSES = ("OK",)


def errors_in(groups: dict[str, dict[str, Any]], prefix: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for name, group in groups.items():
        if name.startswith(prefix):
            merge_counts(counts, {k: v for k, v in group["statuses"].items() if k not in OK_STATUSES})
    return counts


def _group(groups: dict[str, dict[str, Any]], name: str) -> dict[str, Any]:
    return groups.get(name) or {
        "latencies": [],
        "answers": [],
        "statuses": {},
        "slowest_answer": 0.0,
        "stalls": 0,
        "acks": [],
        "counters": {},
    }


def _answers(group: dict[str, Any]) -> dict[str, Any]:
    """Time to the first answer of every attempt (acknowledged, refused or timed out), and how many
    were acknowledged: a stalled call weighs in the percentiles, a quick refusal is counted."""
    return {**latency_summary(group["answers"]), "acked": len(group["latencies"])}


def _stalls(groups: dict[str, dict[str, Any]], prefix: str) -> tuple[int, float]:
    chosen = [g for n, g in groups.items() if n.startswith(prefix)]
    return sum(g["stalls"] for g in chosen), max((g["slowest_answer"] for g in chosen), default=0.0)


def summarise_phase(answers: dict[int, dict[str, Any]]) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """The merged groups of a phase, and the errors of processes that did not deliver theirs."""
    problems = [a["error"] for a in answers.values() if "error" in a]
    groups = merge_groups([a["groups"] for a in answers.values() if "groups" in a])
    return groups, problems


def baseline_figures(groups: dict[str, dict[str, Any]]) -> dict[str, Any]:
    acks = _group(groups, "baseline")["acks"]
    rows = sum(n for _, n in acks)
    if len(acks) < 2:
        return {"rows_per_s": 0.0, "rows": rows, "statuses": errors_in(groups, "baseline")}
    # From the first acknowledgement to the last: the stream's steady rate, start-up excluded.
    span = acks[-1][0] - acks[0][0]
    return {
        "rows_per_s": (rows - acks[0][1]) / span if span > 0 else 0.0,
        "rows": rows,
        "seconds": span,
        "ack": latency_summary(_group(groups, "baseline")["latencies"]),
        "statuses": errors_in(groups, "baseline"),
    }


def with_yardstick(
    fleet: dict[str, Any], before: dict[str, Any] | None, after: dict[str, Any] | None
) -> dict[str, Any]:
    """The fleet's ratio against the mean of one stream alone before and after the fleet phase.

    This machine runs faster or slower for minutes at a time, so an 8 s yardstick taken before
    the fleet alone moved the ratio by a third from run to run; one taken on each side brackets
    the fleet in time. Either missing (a phase failed), the ratio stays against the one there is.
    """
    rates = [b["rows_per_s"] for b in (before, after) if b and b.get("rows_per_s", 0) > 0]
    if not rates:
        return fleet
    yardstick = sum(rates) / len(rates)
    return {
        **fleet,
        "ratio_first_baseline": fleet.get("ratio"),
        "yardstick_rows_per_s": yardstick,
        "ratio": fleet["rows_per_s"] / yardstick,
    }


def fleet_figures(
    groups: dict[str, dict[str, Any]], plan: Plan, backfill_at: float, end_at: float, baseline: float
) -> dict[str, Any]:
    window = end_at - backfill_at
    rows = sum(
        n
        for name, group in groups.items()
        if name.startswith("fleet/")
        for t, n in group["acks"]
        if backfill_at <= t <= end_at
    )
    rate = rows / window if window > 0 else 0.0
    # Every attempt of a live batch ends with exactly one status (OK included).
    live_sent = sum(
        sum(_group(groups, g)["statuses"].values()) for g in ("fleet/live-alone", "fleet/live-backfill")
    )
    stalls, slowest = _stalls(groups, "fleet/")
    return {
        "window_s": window,
        "rows": rows,
        "rows_per_s": rate,
        "ratio": rate / baseline if baseline > 0 else None,
        "live_backfill": _answers(_group(groups, "fleet/live-backfill")),
        "live_alone": _answers(_group(groups, "fleet/live-alone")),
        "backfill": _answers(_group(groups, "fleet/backfill")),
        "backfill_retry_hints": _group(groups, "fleet/backfill")["counters"].get("retry_hints_honoured", 0),
        "operator": {
            kind: {
                **_answers(_group(groups, f"fleet/operator/{kind}")),
                "statuses": errors_in(groups, f"fleet/operator/{kind}"),
            }
            for kind in OPERATOR_CALLS
        },
        "statuses": errors_in(groups, "fleet/"),
        "stalls": stalls,
        "slowest_answer": slowest,
        "live_attempts": live_sent,
        "live_scheduled": round(plan.scheduled_live_batches()),
        "loop_lag": latency_summary(_group(groups, "lag/fleet")["latencies"]),
        "live_lateness": latency_summary(_group(groups, "lateness/live")["latencies"]),
    }


def ramp_figures(step: int, groups: dict[str, dict[str, Any]]) -> dict[str, Any]:
    group = _group(groups, f"ramp/{step}")
    statuses = group["statuses"]
    return {
        "streams": step,
        "answered_streams": sum(statuses.values()),
        "ok": statuses.get("OK", 0),
        "statuses": {k: v for k, v in statuses.items() if k not in OK_STATUSES},
        "ack": latency_summary(group["latencies"]),
        "slowest_answer": group["slowest_answer"],
        "stalls": group["stalls"],
        "loop_lag": latency_summary(_group(groups, f"lag/ramp/{step}")["latencies"]),
    }


def quiet_operator_figures(groups: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return {
        "calls": {
            kind: latency_summary(_group(groups, f"quiet/{kind}")["latencies"]) for kind in OPERATOR_CALLS
        },
        "statuses": errors_in(groups, "quiet/"),
    }


# --- the table -------------------------------------------------------------------------------


def seconds_text(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _pass(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def _latency(summary: dict[str, Any]) -> str:
    if not summary.get("n"):
        return "no answers"
    return (
        f"{seconds_text(summary['p50'])} / {seconds_text(summary['p99'])} / {seconds_text(summary['max'])} s"
    )


def _acked(summary: dict[str, Any]) -> str:
    return f"{summary.get('acked', 0):,} of {summary.get('n', 0):,} answered ok"


def internal_count(results: dict[str, Any]) -> int:
    counts: dict[str, int] = {}
    for key in ("setup", "baseline", "baseline_after", "quiet_operator", "fleet"):
        merge_counts(counts, (results.get(key) or {}).get("statuses", {}))
    for step in results.get("ramp", []):
        merge_counts(counts, step["statuses"])
    return sum(v for k, v in counts.items() if k.split("/")[0] == "INTERNAL")


def verdicts(results: dict[str, Any]) -> dict[str, bool]:
    """Each bar of the issue, met or not (absent figures fail)."""
    fleet = results.get("fleet") or {}
    check = results.get("check") or {}
    live_p99 = (fleet.get("live_backfill") or {}).get("p99")
    ops = fleet.get("operator") or {}
    found = {
        "internal": internal_count(results) == 0,
        "exactly_once": bool(check.get("exact")),
        "live_p99": live_p99 is not None and live_p99 <= BAR_LIVE_P99_S,
        "operator_p99": bool(ops)
        and all(o.get("p99") is not None and o["p99"] <= BAR_OPERATOR_P99_S for o in ops.values()),
        "fleet_ratio": (fleet.get("ratio") or 0.0) >= BAR_FLEET_RATIO,
        "fleet_stalls": fleet.get("stalls", 1) == 0,
    }
    for step in results.get("ramp", []):
        found[f"ramp_{step['streams']}"] = step["stalls"] == 0 and step["answered_streams"] == step["streams"]
    return found


def render(results: dict[str, Any]) -> str:
    plan = results["plan"]
    rows: list[tuple[str, str, str, str, str]] = []
    ok = verdicts(results)
    base = results.get("baseline") or {}
    again = results.get("baseline_after") or {}
    fleet = results.get("fleet") or {}
    quiet = (results.get("quiet_operator") or {}).get("calls", {})
    yardstick = fleet.get("yardstick_rows_per_s", base.get("rows_per_s", 0))
    halves = " and ".join(f"{b['rows_per_s']:,.0f}" for b in (base, again) if b.get("rows_per_s"))
    rows.append(
        (
            "one stream alone (baseline)",
            f"{yardstick:,.0f} rows/s",
            "-",
            "",
            f"{plan['baseline_devices'] * plan['baseline_steps']}-row batches back to back, "
            f"{plan['baseline_s']:.0f} s before the fleet and again after it: "
            + (f"the mean of {halves} rows/s" if halves else "neither measured"),
        )
    )
    if fleet:
        backfill_rows = plan["backfill_devices"] * plan["backfill_steps"]
        low, high = plan["live_interval_s"]
        rows += [
            (
                "fleet rows/s, back-fills on",
                f"{fleet['rows_per_s']:,.0f} = {fleet['ratio'] or 0:.2f} x",
                f">= {BAR_FLEET_RATIO:.1f} x",
                _pass(ok["fleet_ratio"]),
                f"new rows acknowledged over {fleet['window_s']:.0f} s",
            ),
            (
                "live ack p50/p99/max, back-fills on",
                _latency(fleet["live_backfill"]),
                f"p99 <= {BAR_LIVE_P99_S:.0f} s",
                _pass(ok["live_p99"]),
                f"{_acked(fleet['live_backfill'])}; {plan['portals']} portals, "
                f"{plan['live_rows']} rows every {low:.0f}-{high:.0f} s",
            ),
            (
                "live ack, before back-fills",
                _latency(fleet["live_alone"]),
                "-",
                "",
                f"{_acked(fleet['live_alone'])} in the first {plan['live_alone_s']:.0f} s",
            ),
            (
                "back-fill ack p50/p99/max",
                _latency(fleet["backfill"]),
                "-",
                "",
                f"{_acked(fleet['backfill'])}; {plan['backfills']} portals, {backfill_rows:,} rows a batch",
            ),
        ]
        for kind in OPERATOR_CALLS:
            op = fleet["operator"][kind]
            rows.append(
                (
                    f"{kind} p50/p99/max",
                    _latency(op),
                    f"p99 <= {BAR_OPERATOR_P99_S:.0f} s",
                    _pass(op.get("p99") is not None and op["p99"] <= BAR_OPERATOR_P99_S),
                    f"{_acked(op)}; quiet server p50 {seconds_text((quiet.get(kind) or {}).get('p50'))} s",
                )
            )
        rows += [
            (
                "fleet errors by status",
                format_counts(fleet["statuses"]),
                "-",
                "",
                "live portals, back-fills, operator",
            ),
            (
                "fleet stalls",
                f"{fleet['stalls']:,}",
                "0",
                _pass(ok["fleet_stalls"]),
                f"no answer in {plan['stall_s']:.0f} s; slowest {fleet['slowest_answer']:.1f} s",
            ),
        ]
    server = results.get("server") or {}
    rows.append(
        (
            "INTERNAL",
            f"{internal_count(results):,}",
            "0",
            _pass(ok["internal"]),
            f"all phases; {server.get('internal_logged', '?')} in the server log",
        )
    )
    for step in results.get("ramp", []):
        rows.append(
            (
                f"ramp {step['streams']:,} streams",
                f"ok {step['ok']:,}, stalls {step['stalls']:,}",
                "0 stalls",
                _pass(ok[f"ramp_{step['streams']}"]),
                f"ack p50/p99 {seconds_text(step['ack']['p50'])}/{seconds_text(step['ack']['p99'])} s; "
                f"slowest answer {step['slowest_answer']:.2f} s; {format_counts(step['statuses'])}",
            )
        )
    recovery = results.get("recovery") or []
    if recovery:
        shown = [
            f"{r['after']} {'RESTARTED' if r['restarted'] else format(r['seconds'], '.1f') + ' s'}"
            for r in recovery
        ]
        rows.append(
            (
                "answering again after",
                "; ".join(shown),
                "-",
                "",
                "a pooled call answered in 1 s, else the server was restarted for the next phase",
            )
        )
    rss = results.get("rss") or {}
    if rss:
        by_phase = ", ".join(f"{k} {v['total_kib'] / 1024:,.0f}" for k, v in rss["by_phase"].items())
        rows.append(
            (
                "server RSS peak",
                f"{rss['peak_total_kib'] / 1024:,.0f} MB",
                "-",
                "",
                f"MB by phase: {by_phase}; summed over the server process tree",
            )
        )
    check = results.get("check") or {}
    if check:
        flaws = [
            f"{name} {check[key]:,}"
            for name, key in (
                ("partial batches", "partial_batches"),
                ("ack miscounts", "ack_miscounts"),
                ("rollups short", "rollup_short"),
                ("rollups over", "rollup_over"),
                ("rows no batch sent", "stray_rows"),
            )
            if check[key]
        ]
        rows.append(
            (
                "acked rows stored exactly once",
                f"lost {check['lost']:,}, doubled {check['doubled']:,}",
                "0, 0",
                _pass(ok["exactly_once"]),
                f"{check['acked_rows']:,} rows acked; "
                f"{check['stored_without_accepted_ack']:,} stored, ack lost; "
                + (", ".join(flaws) if flaws else "rollups = rows"),
            )
        )
    else:
        rows.append(("acked rows stored exactly once", "not counted", "0, 0", "FAIL", "see harness problems"))
    generator = results.get("generator") or {}
    if generator:
        rows.append(
            (
                "generator",
                f"{plan['clients']} processes",
                f"lag p99 <= {GENERATOR_LAG_BAR_S} s",
                "kept up" if generator["kept_up"] else "SATURATED",
                generator["what"],
            )
        )
    return table(("figure", "value", "bar", "verdict", "notes"), rows)
