"""Stopping every push while the server refuses this token, and resuming the moment it changes.

UNAUTHENTICATED (and PERMISSION_DENIED: an admin token on ingest is the same mistake) stops all
resources, not just the one that saw it. The push state keeps the refused token's fingerprint,
never the token, so a restarted pusher with the same token stays quiet and any other token
(a rotation picked up from the `.env`) resumes at once.
"""

from __future__ import annotations

import logging

from fleet_client.client import IngestClient
from fleet_client.errors import FleetRpcError
from fleet_client.state import PushState

_LOGGER = logging.getLogger(__name__)


class TokenGate:
    """Asks the push state whether the current token was refused; says so once per token, not per tick."""

    def __init__(self, state: PushState, client: IngestClient) -> None:
        self.state = state
        self.client = client
        self._logged: str | None = None

    def refused(self) -> bool:
        """True while the client's token is the one the server refused (then nothing is attempted)."""
        block = self.state.auth_block()
        if block is None:
            return False
        fingerprint = self.client.token_fingerprint
        if block.fingerprint != fingerprint:
            _LOGGER.info("the token changed since the server refused %s: pushing resumes", block.fingerprint)
            self.state.clear_auth_block()
            self._logged = None
            return False
        if self._logged != fingerprint:
            _LOGGER.error(
                "pushing is stopped: the server refused token %s at %s (%s). Set FLEET_TOKEN to the "
                "customer's current token (ask the operator) and pushing resumes by itself.",
                fingerprint,
                block.at.isoformat(timespec="seconds"),
                block.message,
            )
            self._logged = fingerprint
        return True

    def record_refusal(self, error: FleetRpcError) -> None:
        """Remember that the server refused the current token, so later ticks attempt nothing."""
        fingerprint = self.client.token_fingerprint
        self.state.block_auth(fingerprint, error.detailed())
        _LOGGER.error(
            "the server refused token %s (%s): pushing is stopped until FLEET_TOKEN is changed",
            fingerprint,
            error.detailed(),
        )
        self._logged = fingerprint
