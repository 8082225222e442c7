"""What every servicer is built from: settings, databases, clock, token store."""

from __future__ import annotations

from dataclasses import dataclass, field

from fleet_server.auth.lookup import SqlTokenStore, TokenStore
from fleet_server.clock import Clock, SystemClock
from fleet_server.config import Settings
from fleet_server.db.session import Database


@dataclass
class App:
    """The process-wide dependencies, built once at start-up and injected into each servicer."""

    settings: Settings
    db: Database
    clock: Clock = field(default_factory=SystemClock)
    # Reads of the query service; the primary unless FLEET_QUERY_DATABASE_URL names a replica.
    query_db: Database | None = None
    tokens: TokenStore | None = None

    def __post_init__(self) -> None:
        if self.query_db is None:
            self.query_db = self.db
        if self.tokens is None:
            self.tokens = SqlTokenStore(self.db, self.clock)

    @property
    def reader(self) -> Database:
        """The database the query service reads from."""
        assert self.query_db is not None
        return self.query_db

    def close(self) -> None:
        self.db.close()
        if self.query_db is not None and self.query_db is not self.db:
            self.query_db.close()
