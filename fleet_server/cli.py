"""`fleet-server`: serve, migrate, and mint admin tokens (direct database access)."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fleet_server.clock import SystemClock
from fleet_server.config import Settings
from fleet_server.db import migrate
from fleet_server.db.session import Database
from fleet_server.domain.admin_tokens import (
    AdminTokenRecord,
    create_admin_token,
    list_admin_tokens,
    reissue_local_token,
    revoke_admin_token,
)
from fleet_server.domain.compression import compress, customer_id_of, describe, parse_duration
from fleet_server.errors import FleetError
from fleet_server.logs import configure_logging
from fleet_server.server import ConfigurationError, check_settings, probe_bind, serve
from fleet_server.supervisor import supervise

_LOGGER = logging.getLogger("fleet_server")

BOOTSTRAP_TOKEN_NAME = "local-admin"
# What `migrate` and `admin-token` use of the settings; the serving ones are `serve`'s alone.
DATABASE_SETTINGS = ("database_url", "data_dir", "log_level")
# Start-up narration an `admin-token` command does not print unless a log level is asked for:
# its output is the token (or the list), and scripts capture it.
_START_UP_LOGGERS = ("fleet_server", "alembic")


def admin_token_file(settings: Settings) -> Path:
    """Where `make run` leaves the bootstrap admin token (git-ignored, mode 0600)."""
    return settings.data_dir / "admin-token"


def server_address_file(settings: Settings) -> Path:
    """Where `make run` leaves the address it serves on, for `export FLEET_SERVER=$(cat …)`."""
    return settings.data_dir / "server"


def _note_address(settings: Settings) -> None:
    """Write the address clients dial (a port 0 is only known later: then none, not a wrong one)."""
    path = server_address_file(settings)
    if settings.listen.rsplit(":", 1)[-1] == "0":
        path.unlink(missing_ok=True)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(settings.listen + "\n")


@contextlib.contextmanager
def database_url(settings: Settings) -> Iterator[str]:
    """The configured URL, or an embedded PostgreSQL in the data folder kept up while in use."""
    if settings.database_url:
        yield settings.database_url
        return
    from fleet_server.db.embedded import start_embedded

    url, server = start_embedded(settings.data_dir)
    try:
        yield url
    finally:
        del server


def _bootstrap_admin_token(settings: Settings, db: Database) -> None:
    path = admin_token_file(settings)
    if path.exists():
        _LOGGER.info("admin token for fleetctl: %s", path)
        return
    # A lost file (deleted .fleet/admin-token, database kept) must not stop `make run`: revoke the
    # unusable earlier token and mint a fresh one.
    issued = db.transaction(reissue_local_token, BOOTSTRAP_TOKEN_NAME, SystemClock().now())
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(issued.token + "\n")
    _LOGGER.info("bootstrapped admin token %r into %s (fleetctl reads it)", issued.name, path)


def _cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    check_settings(settings)  # before the database starts: a bad flag fails fast and says why
    probe_bind(settings.listen)  # and so does a busy port
    with database_url(settings) as url:
        if args.migrate or not settings.database_url:
            migrate.upgrade(url)
        if args.bootstrap_admin_token:
            db = Database.from_url(url, 1)
            try:
                _bootstrap_admin_token(settings, db)
            finally:
                db.close()
            _note_address(settings)
        serving = replace(settings, database_url=url)
        if settings.workers > 1:
            return supervise(serving)
        serve(serving)
    return 0


def _cmd_migrate(settings: Settings, args: argparse.Namespace) -> int:
    with database_url(settings) as url:
        migrate.upgrade(url, args.revision)
    _LOGGER.info("database migrated to %s", args.revision)
    return 0


def _cmd_admin_token(settings: Settings, args: argparse.Namespace) -> int:
    with database_url(settings) as url:
        migrate.upgrade(url)
        db = Database.from_url(url, 1)
        try:
            if args.action == "create":
                issued = db.transaction(create_admin_token, args.name, SystemClock().now())
                print(issued.token)
                print(
                    f"admin token {issued.name!r} created; it is shown only this once",
                    file=sys.stderr,
                )
            elif args.action == "list":
                _print_admin_tokens(db.transaction(list_admin_tokens))
            elif args.action == "revoke":
                record = db.transaction(revoke_admin_token, args.name, SystemClock().now())
                since = _utc(record.revoked_at) if record.revoked_at else "?"
                print(f"admin token {record.name!r} revoked (since {since}); it is refused from now on")
        finally:
            db.close()
    return 0


def _cmd_compress(settings: Settings, args: argparse.Namespace) -> int:
    """Compress every settled series-month once, print what it did; 1 when a unit could not be."""
    older_than = parse_duration(args.older_than or settings.compress_after, "--older-than")
    with database_url(settings) as url:
        migrate.upgrade(url)
        customer_id = None if args.customer is None else customer_id_of(url, args.customer)
        report = compress(url, SystemClock().now(), older_than, customer_id, dry_run=args.dry_run)
    print(describe(report))
    if report.truncated:
        print(f"gave back {len(report.truncated)} emptied month partitions: {', '.join(report.truncated)}")
    if report.dry_run:
        print("dry run: nothing was written")
    return 1 if report.skipped or report.failed else 0


def _utc(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _print_admin_tokens(records: list[AdminTokenRecord]) -> None:
    rows = [(r.name, _utc(r.created_at), _utc(r.revoked_at) if r.revoked_at else "-") for r in records]
    headers = ("NAME", "CREATED", "REVOKED")
    widths = [max(len(row[i]) for row in (headers, *rows)) for i in range(len(headers))]
    for row in (headers, *rows):
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fleet-server",
        description="Fleet sync central server. Every setting is also read from its FLEET_* "
        "environment variable; flags win.",
    )
    Settings.add_arguments(parser)
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="serve the gRPC API until SIGTERM/SIGINT")
    Settings.add_arguments(serve)
    serve.add_argument(
        "--migrate",
        action="store_true",
        help="run migrations before serving (always done for the embedded database)",
    )
    serve.add_argument(
        "--bootstrap-admin-token",
        action="store_true",
        help="on first start, mint an admin token into DATA_DIR/admin-token for fleetctl; and write "
        "the address served on to DATA_DIR/server (what `make run` does)",
    )

    mig = commands.add_parser("migrate", help="apply database migrations (alembic upgrade)")
    Settings.add_arguments(mig, only=DATABASE_SETTINGS)
    mig.add_argument("revision", nargs="?", default="head", help="target revision (head)")

    tokens = commands.add_parser("admin-token", help="manage operator tokens (direct DB access)")
    Settings.add_arguments(tokens, only=DATABASE_SETTINGS)
    actions = tokens.add_subparsers(dest="action", required=True)
    create = actions.add_parser("create", help="mint a token and print it once")
    create.add_argument("name", help="who or what the token is for")
    actions.add_parser("list", help="every admin token by name, with when it was created and revoked")
    revoke = actions.add_parser("revoke", help="refuse the token named NAME from the next call on")
    revoke.add_argument("name", help="the name given at creation")

    squeeze = commands.add_parser(
        "compress",
        help="compress settled days into cold storage once, and print what it did "
        "(the server also does it in the background, see --compress-interval-s)",
    )
    Settings.add_arguments(squeeze, only=(*DATABASE_SETTINGS, "compress_after"))
    squeeze.add_argument(
        "--older-than",
        default=None,
        help="compress UTC days that ended this long ago (7d, 36h, 90m); default --compress-after",
    )
    squeeze.add_argument("--customer", metavar="CODE", default=None, help="only this customer's readings")
    squeeze.add_argument("--dry-run", action="store_true", help="say what it would do, write nothing")
    return parser


_COMMANDS: dict[str, Any] = {
    "serve": _cmd_serve,
    "migrate": _cmd_migrate,
    "admin-token": _cmd_admin_token,
    "compress": _cmd_compress,
}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = Settings.from_args(args)
    configure_logging(settings.log_level)
    if args.command == "admin-token" and not _log_level_asked(args):
        for name in _START_UP_LOGGERS:
            logging.getLogger(name).setLevel(logging.WARNING)
    if args.command == "compress" and not _log_level_asked(args):
        logging.getLogger("alembic").setLevel(logging.WARNING)  # progress stays, migration talk goes
    try:
        return int(_COMMANDS[args.command](settings, args))
    except (ConfigurationError, FleetError) as exc:
        print(f"fleet-server: {exc}", file=sys.stderr)
        return 2


def _log_level_asked(args: argparse.Namespace) -> bool:
    return getattr(args, "log_level", None) is not None or bool(os.environ.get("FLEET_LOG_LEVEL"))


if __name__ == "__main__":
    sys.exit(main())
