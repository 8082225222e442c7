"""Which exceptions of the database layer are faults the caller sees as UNAVAILABLE, and which are bugs."""

from __future__ import annotations

import psycopg
import pytest
from sqlalchemy import exc

from fleet_server.db.session import database_fault
from fleet_server.errors import Reason, Unavailable


def _wrapped(orig: BaseException, cls: type[exc.DBAPIError] = exc.OperationalError) -> exc.DBAPIError:
    return cls("SELECT 1", {}, orig)


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (exc.TimeoutError("pool"), Reason.DATABASE_BUSY),
        (_wrapped(psycopg.errors.QueryCanceled("statement timeout")), Reason.DATABASE_TIMEOUT),
        (psycopg.errors.QueryCanceled("statement timeout"), Reason.DATABASE_TIMEOUT),
        (_wrapped(psycopg.OperationalError("connection refused")), Reason.DATABASE_UNAVAILABLE),
        (psycopg.OperationalError("the connection is lost"), Reason.DATABASE_UNAVAILABLE),
        (psycopg.errors.AdminShutdown("terminating connection"), Reason.DATABASE_UNAVAILABLE),
        (exc.InvalidatePoolError(), Reason.DATABASE_UNAVAILABLE),
        (exc.DisconnectionError("gone"), Reason.DATABASE_UNAVAILABLE),
        (psycopg.InterfaceError("the connection is closed"), Reason.DATABASE_UNAVAILABLE),
        (
            _wrapped(psycopg.InterfaceError("the connection is closed"), exc.InterfaceError),
            Reason.DATABASE_UNAVAILABLE,
        ),
    ],
)
def test_faults_are_unavailable_with_a_retry_hint(error, reason):
    fault = database_fault(error)
    assert isinstance(fault, Unavailable)
    assert fault.reason == reason
    assert fault.retry_after_ms is not None
    assert fault.retry_after_ms > 0


@pytest.mark.parametrize(
    "error",
    [
        _wrapped(psycopg.errors.UniqueViolation("dup"), exc.IntegrityError),
        _wrapped(psycopg.errors.SyntaxError("oops"), exc.ProgrammingError),
        ValueError("a bug"),
    ],
)
def test_bugs_stay_bugs(error):
    assert database_fault(error) is None
