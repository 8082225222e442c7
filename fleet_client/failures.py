"""What a failed attempt does to a resource's push state: back off, say why, or stop on a refused token.

Every failure backs off per resource (`fleet_client.backoff`: full jitter, capped, never sooner
than the server's `retry-after-ms`), so one broken set never delays the others. A refusal of
the data itself (INVALID_ARGUMENT, FAILED_PRECONDITION) is logged as an error, since only a fix
at the source ends it; a refused token is not backed off at all but raised as `TokenRefused`,
because retrying a dead token forever only fills the logs (`fleet_client.token_gate`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from fleet_client.backoff import Backoff
from fleet_client.errors import FleetRpcError, PermissionDenied, Unauthenticated
from fleet_client.report import Outcome, ResourceResult
from fleet_client.state import PushState, ResourceState

_LOGGER = logging.getLogger(__name__)

_DATA_ERRORS = ("INVALID_ARGUMENT", "FAILED_PRECONDITION")


def describe(error: BaseException) -> str:
    """What a resource's `last_error` says: the server's status, reason and message, or the error."""
    return error.detailed() if isinstance(error, FleetRpcError) else str(error)


class SourceError(Exception):
    """Reading the portal failed (its database is down, a column is missing…)."""

    def __init__(self, resource: str, cause: BaseException) -> None:
        super().__init__(f"reading {resource} from the portal failed: {type(cause).__name__}: {cause}")


class TokenRefused(Exception):
    """The server refused the token mid-tick; the tick stops every resource that is left."""

    def __init__(self, error: FleetRpcError) -> None:
        super().__init__(str(error))
        self.error = error


@dataclass
class FailurePolicy:
    """Keeps each resource's failure count, next attempt and last error in the push state."""

    state: PushState
    backoff: Backoff

    def waiting(self, st: ResourceState, now: datetime) -> ResourceResult | None:
        """The result to report instead of an attempt while `st` is still backing off."""
        if st.next_attempt is not None and now < st.next_attempt:
            wait = (st.next_attempt - now).total_seconds()
            return ResourceResult(
                st.resource, Outcome.BACKING_OFF, error=st.last_error, detail=f"next in {wait:.0f}s"
            )
        return None

    def failed(self, st: ResourceState, error: BaseException, now: datetime) -> ResourceResult:
        """Record the failure and schedule the next attempt; raises `TokenRefused` for a refused token."""
        if isinstance(error, Unauthenticated | PermissionDenied):
            st.last_error = describe(error)
            self.state.save(st)
            raise TokenRefused(error)
        st.failures += 1
        retry_after = error.retry_after_ms if isinstance(error, FleetRpcError) else None
        delay = self.backoff.delay(st.failures, retry_after)
        st.next_attempt = now + timedelta(seconds=delay)
        st.last_error = describe(error)
        self.state.save(st)
        log = (
            _LOGGER.error
            if isinstance(error, FleetRpcError) and error.code.name in _DATA_ERRORS
            else _LOGGER.warning
        )
        log(
            "%s: %s; failure %d in a row, next attempt in %.0fs",
            st.resource,
            st.last_error,
            st.failures,
            delay,
        )
        return ResourceResult(st.resource, Outcome.FAILED, error=st.last_error, detail=st.last_error)

    @staticmethod
    def succeeded(st: ResourceState, now: datetime) -> None:
        """Clear the failure streak (the caller saves `st` with whatever else the success changed)."""
        st.last_success = now
        st.failures = 0
        st.next_attempt = None
        st.last_error = None
