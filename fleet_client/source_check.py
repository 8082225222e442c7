"""Whether FLEET_SOURCE_URL names a portal database, asked once before a push instead of per resource.

Opening a SQLite URL whose file does not exist creates an empty database, and every read of it
then fails with the same "no such table" (with its SQL) once per resource. Asked first, each
cause is one line: the file is missing, the database does not answer, or it lacks the portal's
tables (`fleet_client.portal_schema`, documented in docs/client.md).
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import create_engine, inspect, make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from fleet_client import portal_schema
from fleet_client.errors import ConfigurationError, FleetClientError


class PortalUnavailable(FleetClientError):
    """The portal database did not answer (it may be restarting): a push fails, the settings may be right."""


def first_line(error: BaseException) -> str:
    """An exception as one line: a database driver's own message, without SQL or links."""
    cause = getattr(error, "orig", None) or error
    text = str(cause).strip().splitlines()
    return f"{type(cause).__name__}: {text[0]}" if text else type(cause).__name__


def check_portal(url: str, schema: str | None = None) -> None:
    """Raise `ConfigurationError` (missing file, no portal tables) or `PortalUnavailable` (no answer)."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigurationError(
            "FLEET_SOURCE_URL is not a database URL (e.g. sqlite:///portal.sqlite)"
        ) from None
    shown = parsed.render_as_string(hide_password=True)
    database = parsed.database or ""
    if (
        parsed.get_backend_name() == "sqlite"
        and database not in ("", ":memory:")
        and not database.startswith("file:")
    ):
        path = Path(database).expanduser()
        if not path.is_file():
            raise ConfigurationError(
                f"FLEET_SOURCE_URL {shown}: no such file {path} "
                "(`fleet-push demo-portal PATH` writes a sample portal)"
            )
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            present = set(inspect(conn).get_table_names(schema=schema))
    except SQLAlchemyError as exc:
        raise PortalUnavailable(f"portal database {shown} did not answer: {first_line(exc)}") from None
    finally:
        engine.dispose()
    missing = [name for name in portal_schema.metadata.tables if name not in present]
    if missing:
        where = f" (schema {schema})" if schema else ""
        raise ConfigurationError(
            f"FLEET_SOURCE_URL {shown}{where} is not a portal database: no table {', '.join(missing)} "
            "(docs/client.md lists the tables fleet-push reads)"
        )
