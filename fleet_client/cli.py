"""`fleet-push`: push forever or once, show the state, release quarantined rows, write a demo portal.

Exit codes: 0 = done (or fleet sync is off), 1 = a push failed, the token was refused (`status`
too, while pushing is stopped by it) or another pusher holds the state, 2 = bad settings or
arguments. Errors are one line on stderr; with `--json`, a JSON document on stdout.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

from sqlalchemy import make_url
from sqlalchemy.exc import SQLAlchemyError

from fleet_client.backoff import Backoff
from fleet_client.client import ChannelFactory, FleetClient
from fleet_client.clock import Clock, SystemClock
from fleet_client.console import print_error, until_reader_leaves
from fleet_client.demo import DEMO_START, create_demo_portal
from fleet_client.errors import ConfigurationError
from fleet_client.lanes import LaneFigures, describe_duration
from fleet_client.metrics import PushMetrics, serve_metrics
from fleet_client.once_output import causes, print_report, report_json
from fleet_client.pusher import Pusher
from fleet_client.report import lag_text
from fleet_client.resources import MEASUREMENTS
from fleet_client.settings import PushSettings, settings_help
from fleet_client.source import SqlSource
from fleet_client.source_check import PortalUnavailable, check_portal
from fleet_client.state import PushLocked, PushState, QuarantinedRow, ResourceState

_LOGGER = logging.getLogger(__name__)
DEFAULT_ENV_FILE = Path(".env")
# What `once` reports itself, line by line: these loggers would only say it again (unless a log
# level is asked for).
_REPORTED_BY_ONCE = ("fleet_client.pusher", "fleet_client.failures", "fleet_client.token_gate")
OFF_MESSAGE = (
    "fleet sync is off (FLEET_INGEST_ENABLED is not true): nothing is pushed and no connection is opened"
)


@dataclass
class Runtime:
    """What a command may be handed instead of the real thing (tests inject these)."""

    env: Mapping[str, str] | None = None
    channel_factory: ChannelFactory | None = None
    clock: Clock | None = None
    rand: Callable[[], float] | None = None
    out: TextIO | None = None

    @property
    def stdout(self) -> TextIO:
        return self.out or sys.stdout


def _day(text: str) -> date:
    """argparse type of `--start`: a calendar day, refused in words a person reads."""
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not a day: use YYYY-MM-DD ({exc})") from None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fleet-push",
        description="Push this portal's data to a fleet-server (opt-in: FLEET_INGEST_ENABLED=true).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="settings (environment, or KEY=value lines in the .env file; the environment wins):\n"
        + settings_help(),
    )
    env_help = "settings file (default ./.env, used when present; a file named here must exist)"
    level_help = "override FLEET_LOG_LEVEL"
    parser.add_argument("--env-file", type=Path, default=None, help=env_help)
    parser.add_argument("--log-level", default=None, help=level_help)
    # Also accepted after the command (`fleet-push status --env-file portal.env`); SUPPRESS keeps
    # a value given before the command when none is given after it.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--env-file", type=Path, default=argparse.SUPPRESS, help=env_help)
    common.add_argument("--log-level", default=argparse.SUPPRESS, help=level_help)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser(
        "run", parents=[common], help="push every FLEET_INTERVAL_S seconds until SIGTERM/SIGINT"
    )
    run.add_argument("--interval", type=float, default=None, help="seconds between ticks (FLEET_INTERVAL_S)")
    run.add_argument(
        "--metrics-listen",
        default=None,
        metavar="HOST:PORT",
        help="serve Prometheus metrics at http://HOST:PORT/metrics (FLEET_METRICS_LISTEN)",
    )
    once = commands.add_parser("once", parents=[common], help="run one tick and exit")
    once.add_argument("--json", action="store_true", help="the tick's outcome as JSON, for scripts")
    status = commands.add_parser("status", parents=[common], help="print the push state per resource")
    status.add_argument("--json", action="store_true", help="JSON for scripts")
    commands.add_parser(
        "release-quarantine",
        parents=[common],
        help="send the measurement rows the server refused again (after fixing them at the source)",
    )
    demo = commands.add_parser("demo-portal", help="write a sample portal database (SQLite) to PATH")
    demo.add_argument("path", type=Path)
    demo.add_argument("--force", action="store_true", help="replace PATH if it exists")
    demo.add_argument("--days", type=int, default=7, help="days of 15-minute readings (7)")
    demo.add_argument("--start", type=_day, default=DEMO_START, help=f"first day, UTC ({DEMO_START})")
    return parser


def main(argv: Sequence[str] | None = None, runtime: Runtime | None = None) -> int:
    runtime = runtime or Runtime()
    args = _parser().parse_args(argv)
    return until_reader_leaves(lambda: _command(args, runtime))


def _command(args: argparse.Namespace, runtime: Runtime) -> int:
    as_json = bool(getattr(args, "json", False))
    try:
        if args.command == "demo-portal":
            _setup_logging("INFO")
            return _demo(args, runtime)
        settings = _load(runtime, args)
        _setup_logging(args.log_level or settings.log_level)
        if args.command == "status":
            return _status(settings, as_json, runtime)
        if args.command == "release-quarantine":
            return _release_quarantine(settings, runtime)
        if args.command == "once":
            return _once(settings, args, runtime)
        return _run(settings, args, runtime)
    except ConfigurationError as exc:
        print_error("fleet-push", str(exc), as_json=as_json, out=runtime.stdout, kind="settings")
        return 2
    except PortalUnavailable as exc:
        print_error("fleet-push", str(exc), as_json=as_json, out=runtime.stdout, kind="portal")
        return 1
    except PushLocked as exc:
        print_error("fleet-push", str(exc), as_json=as_json, out=runtime.stdout, kind="locked")
        return 1


def _env_file(args: argparse.Namespace) -> Path:
    return args.env_file if args.env_file is not None else DEFAULT_ENV_FILE


def _load(runtime: Runtime, args: argparse.Namespace) -> PushSettings:
    """The settings; a file named by `--env-file` must exist (./.env is read only when present)."""
    if args.env_file is not None and not args.env_file.is_file():
        raise ConfigurationError(f"--env-file {args.env_file}: no such file")
    return PushSettings.load(runtime.env, _env_file(args))


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


@contextmanager
def _said_by_the_report(quiet: bool) -> Iterator[None]:
    """While `once` ticks, silence the loggers whose lines its report says anyway (one line per
    cause, not three); restored afterwards, so the process (or a test run) keeps its logging."""
    loggers = [logging.getLogger(name) for name in _REPORTED_BY_ONCE] if quiet else []
    before = [logger.disabled for logger in loggers]
    for logger in loggers:
        logger.disabled = True
    try:
        yield
    finally:
        for logger, was in zip(loggers, before, strict=True):
            logger.disabled = was


# -- demo-portal ---------------------------------------------------------------------------------


def _demo(args: argparse.Namespace, runtime: Runtime) -> int:
    try:
        portal = create_demo_portal(args.path, start=args.start, days=args.days, force=args.force)
    except (FileExistsError, ValueError) as exc:
        print(f"fleet-push: {exc}", file=sys.stderr)
        return 2
    out = runtime.stdout
    print(
        f"demo portal written to {portal.path}: {portal.sites} sites, {portal.devices} devices, "
        f"{portal.municipalities} municipality, {portal.tariffs} tariff ({portal.periods} periods), "
        f"{portal.measurements:,} readings",
        file=out,
    )
    print(f"source URL: {portal.url}", file=out)
    # Runnable as printed: the token and the server stay in the variables that hold them.
    print(f"push it:    export FLEET_INGEST_ENABLED=true FLEET_SOURCE_URL={portal.url}", file=out)
    print(
        "            fleet-push once    # with FLEET_TOKEN (the customer's token) and FLEET_SERVER set",
        file=out,
    )
    return 0


# -- building the pusher -------------------------------------------------------------------------


@contextmanager
def _pusher(settings: PushSettings, runtime: Runtime) -> Iterator[Pusher]:
    """A pusher holding the state lock; everything it opened is closed on exit.

    The settings and the portal are checked first, each failing in one line before anything is
    dialled; earlier back-off is dropped when the server or the token changed since.
    """
    settings.require_push_settings()
    clock = runtime.clock or SystemClock()
    client = FleetClient(
        settings.server,
        settings.token,
        tls=settings.tls_options(),
        options=settings.call_options(),
        insecure=settings.insecure,
        channel_factory=runtime.channel_factory,
    )
    check_portal(settings.source_url, settings.source_schema or None)
    state = PushState.open(settings.state_url, clock, settings.lock_stale_s)
    source = SqlSource(settings.source_url, schema=settings.source_schema or None)
    try:
        state.acquire()
        if state.retarget(settings.push_target()):
            _LOGGER.info(
                "FLEET_SERVER or FLEET_TOKEN changed: earlier back-off dropped, every resource is tried now"
            )
        backoff = settings.backoff()
        if runtime.rand is not None:
            backoff = Backoff(backoff.base_s, backoff.cap_s, runtime.rand)
        yield Pusher(source, client, state, options=settings.push_options(), backoff=backoff, clock=clock)
    finally:
        state.release()
        state.close()
        source.close()
        client.close()


def _once(settings: PushSettings, args: argparse.Namespace, runtime: Runtime) -> int:
    out = runtime.stdout
    if not settings.ingest_enabled:
        _LOGGER.info(OFF_MESSAGE)
        if args.json:
            print(
                json.dumps({"ok": True, "enabled": False, "resources": [], "errors": []}, indent=2), file=out
            )
        return 0
    with _said_by_the_report(args.log_level is None), _pusher(settings, runtime) as pusher:
        report = pusher.tick()
        block = pusher.state.auth_block() if report.blocked else None
    if args.json:
        print(
            json.dumps({"enabled": True, **report_json(report, settings.server, block)}, indent=2), file=out
        )
    else:
        print_report(report, out)
        for cause in causes(report, settings.server, block):
            print(f"fleet-push: {cause}", file=sys.stderr)
    return 0 if report.ok else 1


# -- run -----------------------------------------------------------------------------------------


class _Stopper:
    """SIGTERM/SIGINT: stop after the batches in flight; the handlers are restored afterwards."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.pusher: Pusher | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        _LOGGER.info("%s: stopping after the batches in flight", signal.Signals(signum).name)
        self.event.set()
        if self.pusher is not None:
            self.pusher.request_stop()

    def __enter__(self) -> _Stopper:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def _run(settings: PushSettings, args: argparse.Namespace, runtime: Runtime) -> int:
    """Tick until stopped. Bad settings at start exit (2); a portal that does not answer, or a bad
    edit later, is logged once per cause and tried again every interval. With --metrics-listen the
    pusher's metrics are served for as long as it runs."""
    listen = args.metrics_listen or settings.metrics_listen
    metrics = PushMetrics() if listen else None
    endpoint = serve_metrics(metrics, listen) if metrics is not None else None
    try:
        return _run_until_stopped(settings, args, runtime, metrics)
    finally:
        if endpoint is not None:
            endpoint.close()


def _run_until_stopped(
    settings: PushSettings, args: argparse.Namespace, runtime: Runtime, metrics: PushMetrics | None
) -> int:
    with _Stopper() as stopper:
        said_off = False
        started = False
        said: str | None = None
        while not stopper.event.is_set():
            interval = _interval(args, settings)
            if not settings.ingest_enabled:
                if not said_off:
                    _LOGGER.info("%s; %s is re-read every %.0fs", OFF_MESSAGE, _env_file(args), interval)
                    said_off = True
                stopper.event.wait(interval)
                settings = _reload(runtime, args, settings)
                continue
            try:
                _run_enabled(settings, args, runtime, stopper, metrics)
                said = None
            except (ConfigurationError, PortalUnavailable) as exc:
                if not started and isinstance(exc, ConfigurationError):
                    raise
                if str(exc) != said:
                    _LOGGER.error("%s; trying again every %.0fs", exc, interval)
                    said = str(exc)
                stopper.event.wait(interval)
            started = True
            if stopper.event.is_set():
                break
            settings = _reload(runtime, args, settings)
            said_off = False
    _LOGGER.info("fleet-push stopped")
    return 0


def _interval(args: argparse.Namespace, settings: PushSettings) -> float:
    """`--interval` when given, else FLEET_INTERVAL_S as the settings now say (re-read each tick)."""
    return float(args.interval) if args.interval is not None else settings.interval_s


def _reload(runtime: Runtime, args: argparse.Namespace, current: PushSettings) -> PushSettings:
    """The settings as they are now; a broken edit of the .env keeps the last good ones running."""
    try:
        fresh = _load(runtime, args)
        if fresh.ingest_enabled:
            fresh.require_push_settings()
        return fresh
    except ConfigurationError as exc:
        _LOGGER.error("%s; keeping the previous settings", exc)
        return current


def _run_enabled(
    settings: PushSettings,
    args: argparse.Namespace,
    runtime: Runtime,
    stopper: _Stopper,
    metrics: PushMetrics | None = None,
) -> None:
    """Tick until stopped or switched off; a changed token in the .env is picked up between ticks."""
    with _pusher(settings, runtime) as pusher:
        stopper.pusher = pusher
        _LOGGER.info("fleet-push pushing %s to %s", _safe_url(settings.source_url), settings.server)
        try:
            while not stopper.event.is_set():
                started = pusher.clock.monotonic()
                try:
                    report = pusher.tick()
                except SQLAlchemyError as exc:
                    # The push state's database hiccuped (locked, restarting): nothing was lost,
                    # the cursor is whatever was last saved; try again next interval.
                    _LOGGER.error(
                        "push state unavailable (%s); retrying in %.0fs",
                        type(exc).__name__,
                        _interval(args, settings),
                    )
                    stopper.event.wait(_interval(args, settings))
                    continue
                if metrics is not None:
                    metrics.record_tick(pusher, report, pusher.clock.monotonic() - started)
                if report.progress is not None:
                    print(str(report.progress), file=runtime.stdout, flush=True)
                if stopper.event.is_set():
                    return
                if not report.backlog:  # a back-fill goes on at once; the cap only bounds a tick
                    stopper.event.wait(_interval(args, settings))
                fresh = _reload(runtime, args, settings)
                if not fresh.ingest_enabled:
                    _LOGGER.info("FLEET_INGEST_ENABLED is no longer true: pushing stops")
                    return
                if _where(fresh) != _where(settings):
                    _LOGGER.info(
                        "the server, portal or push-state settings changed: starting again with them"
                    )
                    return
                if fresh.token and fresh.token != settings.token:
                    _LOGGER.info("FLEET_TOKEN changed: using the new token from the next call")
                    pusher.client.set_token(fresh.token)
                    pusher.state.retarget(fresh.push_target())
                    settings = fresh
        finally:
            stopper.pusher = None


def _where(settings: PushSettings) -> tuple[object, ...]:
    """The settings a running pusher is built from (a change means building it again)."""
    return (
        settings.server,
        settings.tls_options(),
        settings.insecure,
        settings.source_url,
        settings.source_schema,
        settings.state_url,
    )


# -- status --------------------------------------------------------------------------------------


def _safe_url(url: str) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<unparseable URL>"


def _iso(value: datetime | None) -> str:
    return value.isoformat(timespec="seconds") if value else "-"


def _cursor_cell(row: ResourceState) -> str:
    if row.resource == MEASUREMENTS:
        return row.cursor.describe() if row.cursor else "-"
    return f"hash {row.snapshot_hash[:12]}" if row.snapshot_hash else "-"


def _count(value: int | None) -> str:
    return f"{value:,}" if value is not None else "?"


def _lane_lines(f: LaneFigures) -> list[str]:
    """The measurement lanes under the table: the back-fill's position and pace, the live lag."""
    if f.backfilling:
        assert f.split is not None
        rate = f"{f.backfill_rows_per_s:,.0f} rows/s" if f.backfill_rows_per_s is not None else "? rows/s"
        head = "measurement lanes: back-fill and live (the live lane goes first in every tick)"
        backfill = (
            f"  back-fill  at {f.backfill_cursor.describe() if f.backfill_cursor else 'the start'}"
            f" → {f.split.describe()} · {f.backfill_rows_sent:,} sent · {_count(f.backfill_rows_left)} left"
            f" · {rate} · ETA {describe_duration(f.backfill_eta_s)} · since {_iso(f.backfill_started)}"
        )
        lines = [head, backfill]
    else:
        last = (
            f"; the last back-fill ({f.backfill_rows_sent:,} rows) ended {_iso(f.backfill_finished)}"
            if f.backfill_finished is not None
            else ""
        )
        lines = [f"measurement lanes: one (no back-fill running{last})"]
    lag = lag_text(f.live_lag_s) if f.live_lag_s is not None else "?"
    lines.append(
        f"  live       at {f.live_cursor.describe() if f.live_cursor else 'the start'} · lag {lag}"
        f" (newest at the portal {_iso(f.newest_at_portal)}, newest acknowledged {_iso(f.newest_acked)})"
        f" · {_count(f.live_waiting)} waiting · as of {_iso(f.checked_at)}"
    )
    return lines


def _quarantined_line(count: int, newest: QuarantinedRow) -> str:
    row = newest.row
    said = f"{newest.status} [{newest.reason}]" if newest.reason else newest.status
    return (
        f"QUARANTINED: {count:,} measurement row(s) the server refused are set aside and skipped; "
        f"newest: device {row.device_id} {row.metric} {_iso(row.time)} value {row.value!r} "
        f"({said}: {newest.message}). Fix them at the source, then `fleet-push release-quarantine` "
        "sends them again"
    )


def _release_quarantine(settings: PushSettings, runtime: Runtime) -> int:
    state = PushState.open(settings.state_url, runtime.clock, settings.lock_stale_s)
    try:
        state.acquire()
        try:
            released = state.release_quarantine()
        finally:
            state.release()
    finally:
        state.close()
    print(
        f"released {released:,} quarantined row(s); the next tick reads them again from the portal",
        file=runtime.stdout,
    )
    return 0


def _status(settings: PushSettings, as_json: bool, runtime: Runtime) -> int:
    state = PushState.open(settings.state_url, runtime.clock, settings.lock_stale_s)
    try:
        rows = state.load_all()
        holder = state.lock_holder()
        block = state.auth_block()
        lanes = state.load_lanes()
        quarantined = state.quarantine_count()
        newest = state.quarantined(limit=100) if quarantined else []
    finally:
        state.close()
    measurements = next(r for r in rows if r.resource == MEASUREMENTS)
    figures = lanes.figures(measurements.cursor)
    out = runtime.stdout
    if as_json:
        doc = {
            "enabled": settings.ingest_enabled,
            "server": settings.server,
            "state_url": _safe_url(settings.state_url),
            "resources": [r.to_json() for r in rows],
            "lanes": figures.to_json(),
            "lock": None
            if holder is None
            else {"host": holder.host, "pid": holder.pid, "heartbeat_at": holder.heartbeat_at.isoformat()},
            "token_refused": None
            if block is None
            else {"fingerprint": block.fingerprint, "message": block.message, "at": block.at.isoformat()},
            "quarantine": {"count": quarantined, "newest": [q.to_json() for q in newest]},
        }
        print(json.dumps(doc, indent=2), file=out)
        return 0 if block is None else 1
    print(
        f"FLEET_INGEST_ENABLED={'true' if settings.ingest_enabled else 'false'} · server {settings.server} · "
        f"state {_safe_url(settings.state_url)}",
        file=out,
    )
    header = ("RESOURCE", "CURSOR", "LAST SUCCESS", "FAILURES", "NEXT ATTEMPT", "LAST ERROR")
    table = [header] + [
        (
            r.resource,
            _cursor_cell(r),
            _iso(r.last_success),
            str(r.failures),
            _iso(r.next_attempt),
            r.last_error or "-",
        )
        for r in rows
    ]
    widths = [max(len(line[i]) for line in table) for i in range(len(header) - 1)]
    for line in table:
        cells = [cell.ljust(width) for cell, width in zip(line[:-1], widths, strict=True)]
        print("  ".join([*cells, line[-1]]), file=out)
    print("\n".join(_lane_lines(figures)), file=out)
    if holder is not None:
        print(
            f"pushing now: pid {holder.pid} on {holder.host}, heartbeat {_iso(holder.heartbeat_at)}",
            file=out,
        )
    if newest:
        print(_quarantined_line(quarantined, newest[0]), file=out)
    if block is not None:
        print(
            f"STOPPED: the server refused token {block.fingerprint} at {_iso(block.at)} ({block.message}); "
            "set FLEET_TOKEN to the current token",
            file=out,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
