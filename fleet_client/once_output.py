"""What `fleet-push once` prints for its tick: a line per resource, then one line per cause.

A cause shared by several resources (an unreachable server fails sites, municipalities and
measurements alike) is said once, naming them, and in the reader's terms: an unreachable server
says where it was looked for and which setting moves it; a database error keeps its first line
and leaves out the SQL. `--json` gets the same facts as one document.
"""

from __future__ import annotations

from typing import Any, TextIO

from fleet_client.errors import unreachable_reason
from fleet_client.report import TickReport
from fleet_client.state import AuthBlock


def explain(error: str, server: str) -> str:
    """One line for a resource's error as the report holds it."""
    why = unreachable_reason(error)
    if why is not None:
        return (
            f"cannot reach fleet-server at {server} ({why}): is it running there? "
            "FLEET_SERVER sets the address"
        )
    return error.strip().splitlines()[0] if error.strip() else error


def causes(report: TickReport, server: str, block: AuthBlock | None = None) -> list[str]:
    """One line per distinct cause, each naming the resources it stopped, in push order."""
    grouped: dict[str, list[str]] = {}
    for result in report.results:
        if result.error:
            grouped.setdefault(explain(result.error, server), []).append(result.resource)
    lines = [f"{', '.join(names)}: {cause}" for cause, names in grouped.items()]
    if report.blocked and block is not None and not grouped:
        lines.append(
            f"the server refused token {block.fingerprint} at {block.at.isoformat(timespec='seconds')} "
            f"({block.message}); set FLEET_TOKEN to the customer's current token"
        )
    return lines


def print_report(report: TickReport, out: TextIO) -> None:
    """A line per resource; a failure's cause is left to `causes`, so it is not said twice."""
    for result in report.results:
        line = result.describe(width=15)
        if result.error and result.detail == result.error:
            line = f"{result.resource:<15} {result.outcome.value}"
        print(line, file=out)
    if report.progress is not None:
        print(str(report.progress), file=out)


def report_json(report: TickReport, server: str, block: AuthBlock | None = None) -> dict[str, Any]:
    """The tick as `fleet-push once --json` prints it."""
    progress = report.progress
    return {
        "ok": report.ok,
        "resources": [
            {
                "resource": r.resource,
                "outcome": r.outcome.name.lower(),
                "rows": r.rows,
                "accepted": r.accepted,
                "duplicates": r.duplicates,
                "detail": r.detail or None,
                "error": explain(r.error, server) if r.error else None,
            }
            for r in report.results
        ],
        "errors": causes(report, server, block),
        "backfill": None
        if progress is None
        else {
            "rows_sent": progress.rows_sent,
            "rows_left": progress.rows_left,
            "rows_per_s": round(progress.rows_per_s, 1),
            "eta_s": None if progress.eta_s is None else round(progress.eta_s),
            "live_lag_s": None if progress.live_lag_s is None else round(progress.live_lag_s, 1),
        },
    }
