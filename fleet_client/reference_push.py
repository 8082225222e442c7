"""Pushing one reference set (sites, devices, municipalities, tariffs) as a complete snapshot.

A set is streamed only when its canonical hash differs from the last one the server
acknowledged, or when the resync interval has passed since that acknowledgement (cheap, and it
heals a central database repaired behind the pusher's back). The hash is stored only on the
server's acknowledgement, so a failed push is retried with the same data next time.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from fleet_client.client import IngestClient
from fleet_client.clock import Clock
from fleet_client.errors import FleetRpcError
from fleet_client.failures import FailurePolicy, SourceError
from fleet_client.push_options import PushOptions
from fleet_client.report import Outcome, ResourceResult
from fleet_client.resources import ReferenceSet
from fleet_client.snapshot import snapshot_hash
from fleet_client.source import Source
from fleet_client.state import PushState

_LOGGER = logging.getLogger(__name__)


@dataclass
class ReferencePush:
    """Reads a set from the portal, skips it when the server already has it, else pushes it."""

    source: Source
    client: IngestClient
    state: PushState
    failures: FailurePolicy
    clock: Clock
    options: PushOptions

    def push(self, reference: ReferenceSet[Any, Any]) -> ResourceResult:
        resource = reference.name
        st = self.state.load(resource)
        now = self.clock.now()
        waiting = self.failures.waiting(st, now)
        if waiting is not None:
            return waiting
        try:
            messages = reference.messages(self.source)
        except Exception as exc:
            _LOGGER.debug("reading %s from the portal failed", resource, exc_info=exc)
            return self.failures.failed(st, SourceError(resource, exc), now)
        digest = snapshot_hash(messages)
        fresh = (
            st.last_success is not None
            and (now - st.last_success).total_seconds() < self.options.resync_interval_s
        )
        if digest == st.snapshot_hash and fresh:
            return ResourceResult(resource, Outcome.UNCHANGED)
        st.last_attempt = now
        try:
            response = reference.push(self.client, messages)
        except FleetRpcError as exc:
            return self.failures.failed(st, exc, now)
        self.failures.succeeded(st, now)
        st.snapshot_hash = digest
        st.rows_sent += len(messages)
        self.state.save(st)
        summary = response.summary
        detail = (
            f"{summary.received} received: {summary.inserted} inserted, {summary.updated} updated, "
            f"{summary.deleted} deleted, {summary.unchanged} unchanged"
        )
        return ResourceResult(resource, Outcome.PUSHED, streams=1, rows=len(messages), detail=detail)
