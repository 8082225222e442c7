"""Credential changes as they commit: a thread that LISTENs for the customers trigger's notices.

Migration 0007 makes every statement that changes a customer's token, grace window or
`is_active`, or deletes or truncates customers, notify `fleet_token_change` when it commits.
`TokenChangeListener` holds one connection of its own (never a pooled one: it waits on it
forever) and reports three things to its owner, the token cache: `armed` once its LISTEN is in
effect, `changed` for every notice, `lost` when it can no longer be sure to hear one (its
connection failed, or the database lacks the trigger) — then it reconnects, with a growing pause.

A connection that dies quietly (a network that drops packets) would hear nothing while looking
healthy, so its TCP keepalives and user timeout are short: such a connection fails within
about 15 s, and the cache it guards also ages every entry out within a minute.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import psycopg
from sqlalchemy.engine import URL

from fleet_server.db.session import CONNECT_TIMEOUT_S, application_name

_LOGGER = logging.getLogger(__name__)

CHANNEL = "fleet_token_change"
_TRIGGER_EXISTS = (
    "SELECT 1 FROM pg_trigger WHERE tgname = 'tg_customers_token_change' "
    "AND tgrelid = 'fleet.customers'::regclass AND tgenabled <> 'D'"
)
# How often the thread looks up from waiting, to notice it is asked to stop.
_POLL_S = 0.5
_RETRY_FIRST_S = 0.5
_RETRY_MAX_S = 30.0


class TokenChangeListener:
    """A daemon thread listening on `CHANNEL` through its own connection to `url`."""

    def __init__(
        self,
        url: URL,
        *,
        armed: Callable[[], None],
        changed: Callable[[], None],
        lost: Callable[[], None],
    ) -> None:
        self._conninfo = url.set(drivername="postgresql").render_as_string(hide_password=False)
        self._armed = armed
        self._changed = changed
        self._lost = lost
        self._stop = threading.Event()
        self._connection: psycopg.Connection[object] | None = None
        self._thread = threading.Thread(target=self._run, name="token-changes", daemon=True)

    def start(self) -> TokenChangeListener:
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 2.0) -> None:
        self._stop.set()
        self._thread.join(timeout_s)

    @property
    def backend_pid(self) -> int | None:
        """The listening connection's server process, while it has one (for tests and ops)."""
        connection = self._connection
        return None if connection is None or connection.closed else connection.info.backend_pid

    def _run(self) -> None:
        pause = _RETRY_FIRST_S
        while not self._stop.is_set():
            try:
                if self._listen():
                    pause = _RETRY_FIRST_S
            except Exception as exc:
                _LOGGER.warning("token cache off: the credential-change listener failed (%s); retrying", exc)
            finally:
                self._lost()
                self._connection = None
            self._stop.wait(pause)
            pause = min(pause * 2, _RETRY_MAX_S)

    def _listen(self) -> bool:
        """Listen until asked to stop or the connection fails; False if the trigger is missing."""
        with psycopg.connect(
            self._conninfo,
            autocommit=True,
            connect_timeout=CONNECT_TIMEOUT_S,
            fallback_application_name=application_name(),
            keepalives=1,
            keepalives_idle=5,
            keepalives_interval=2,
            keepalives_count=3,
            tcp_user_timeout=15_000,
        ) as connection:
            self._connection = connection
            if connection.execute(_TRIGGER_EXISTS).fetchone() is None:
                _LOGGER.warning("token cache off: the database has no credential-change trigger (migrate)")
                self._stop.wait(_RETRY_MAX_S)
                return False
            connection.execute(f"LISTEN {CHANNEL}")
            self._armed()
            _LOGGER.info("token cache on: listening for credential changes")
            while not self._stop.is_set():
                for _notice in connection.notifies(timeout=_POLL_S):
                    self._changed()
            return True
