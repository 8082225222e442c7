"""A short cache of customer token lookups, trusted only while credential changes are heard.

Every call of the fleet authenticates, and a portal opens a stream per tick: the lookup was a
hop to a database thread and a statement per call, about a tenth of the server's CPU per live
call (docs/DESIGN.md, "Authentication"). A short cache is allowed only if rotation, deactivation
and deletion take effect at once, so this one is kept honest three ways:

- it is *armed* only while this process listens for credential changes (a trigger on
  `fleet.customers` notifies every listener when a statement that changes a token, a grace
  window or `is_active`, or removes customers, commits; `store/token_events.py`). Disarmed —
  before the listener connected, after it lost its connection, on a database without the
  trigger — nothing is served from it and nothing is kept;
- every notification, and every change this process makes itself (the admin service calls
  `invalidate` once its change committed, before it answers), drops it whole and moves its
  generation: a lookup that began before the change and ends after it finds the generation
  moved and is not kept, so a stale answer cannot outlive the notification;
- an entry lives at most `ttl_s` (a minute), whatever the listener says.

Only what a lookup found valid is kept, and only a current token's identity: an unknown token is
looked up every time (nothing an attacker sends can fill it), and a token in its rotation grace
window is looked up every time too, since its use is recorded (`_note_previous_token_use`) and
its window ends by the clock. Keys are the tokens' SHA-256 digests, never the tokens.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

V = TypeVar("V")

# How long an entry is trusted at most, notifications or not.
TTL_S = 60.0


class TokenCache(Generic[V]):
    """digest → identity, at most `max_entries` (0 = no cache), each for at most `ttl_s`.

    Thread-safe: the event loop reads and fills it, the listener's thread arms, disarms and
    invalidates it.
    """

    def __init__(
        self, max_entries: int, ttl_s: float = TTL_S, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self.max_entries = max(0, max_entries)
        self._ttl_s = ttl_s
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._entries: dict[str, tuple[float, V]] = {}
        self._generation = 0
        self._armed = False
        self.hits = 0
        self.misses = 0

    @property
    def enabled(self) -> bool:
        return self.max_entries > 0

    @property
    def armed(self) -> bool:
        return self._armed

    @property
    def generation(self) -> int:
        """Read before a lookup starts; `put` keeps the result only if it has not moved since."""
        return self._generation

    def get(self, digest: str) -> V | None:
        with self._lock:
            found = self._entries.get(digest) if self._armed else None
            if found is not None and found[0] > self._monotonic():
                self.hits += 1
                return found[1]
            if found is not None:
                del self._entries[digest]
            self.misses += 1
            return None

    def put(self, digest: str, identity: V, generation: int) -> None:
        """Keep what a lookup begun at `generation` found, unless anything changed since."""
        with self._lock:
            if not self._armed or generation != self._generation or not self.max_entries:
                return
            if len(self._entries) >= self.max_entries:
                del self._entries[next(iter(self._entries))]  # the oldest kept
            self._entries[digest] = (self._monotonic() + self._ttl_s, identity)

    def invalidate(self) -> None:
        """Credentials changed somewhere: forget everything, and every lookup still under way."""
        with self._lock:
            self._entries.clear()
            self._generation += 1

    def arm(self) -> None:
        """Changes are heard from now on (the listener's LISTEN is in effect)."""
        with self._lock:
            self._entries.clear()
            self._generation += 1
            self._armed = True

    def disarm(self) -> None:
        """Changes may go unheard: serve nothing, keep nothing, until armed again."""
        with self._lock:
            self._armed = False
            self._entries.clear()
            self._generation += 1

    @property
    def size(self) -> int:
        """Entries kept now. A property, not `__len__`: an empty cache must not read as false
        (`cache or default` once dropped the app's cache for a private one)."""
        return len(self._entries)
