"""`Pusher.tick()`: one pass of fleet sync — reference snapshots, then a capped measurement push.

The tick walks `fleet_client.resources` in order: sites → devices → municipalities → tariffs
(`fleet_client.reference_push`), then measurements (`fleet_client.measurement_push`). A parent
that did not end the tick in sync (failed now, or still backing off from a failure) skips its
dependants: devices need their sites, tariffs their municipalities. Failures back off per
resource (`fleet_client.failures`); a refused token stops every resource until the token
changes (`fleet_client.token_gate`). The tick's outcome is a `TickReport` (`fleet_client.report`).

`Pusher`, `PushOptions`, `TickReport` and `Outcome` are importable from here: this module is
the pusher's front door, the others are its parts.
"""

from __future__ import annotations

import logging
import threading

from fleet_client.backoff import Backoff
from fleet_client.client import IngestClient
from fleet_client.clock import Clock, SystemClock
from fleet_client.failures import FailurePolicy, TokenRefused
from fleet_client.lanes import LaneFigures
from fleet_client.measurement_push import AckHook, MeasurementPush
from fleet_client.push_options import PushOptions
from fleet_client.reference_push import ReferencePush
from fleet_client.report import Outcome, Progress, ResourceResult, TickReport
from fleet_client.resources import MEASUREMENTS, REFERENCE_SETS, RESOURCES
from fleet_client.source import Source
from fleet_client.state import PushState
from fleet_client.token_gate import TokenGate

__all__ = [
    "AckHook",
    "LaneFigures",
    "Outcome",
    "Progress",
    "PushOptions",
    "Pusher",
    "ResourceResult",
    "TickReport",
]

_LOGGER = logging.getLogger(__name__)


class Pusher:
    """Pushes one portal (`source`) through one `client`, remembering progress in `state`.

    `state` must be locked (`state.acquire()`) by the caller. `on_batch_acked(batch_id, cursor,
    ack)` runs after each acknowledged batch's cursor is saved (progress displays, fault tests).
    """

    def __init__(
        self,
        source: Source,
        client: IngestClient,
        state: PushState,
        *,
        options: PushOptions | None = None,
        backoff: Backoff | None = None,
        clock: Clock | None = None,
        on_batch_acked: AckHook | None = None,
    ) -> None:
        self.source = source
        self.client = client
        self.state = state
        self.options = options or PushOptions()
        self.backoff = backoff or Backoff()
        self.clock = clock or SystemClock()
        self._stop = threading.Event()
        self._token = TokenGate(state, client)
        failures = FailurePolicy(state, self.backoff)
        self._references = ReferencePush(source, client, state, failures, self.clock, self.options)
        self._measurements = MeasurementPush(
            source, client, state, failures, self.clock, self.options, self._stop, on_batch_acked
        )

    @property
    def on_batch_acked(self) -> AckHook | None:
        return self._measurements.on_batch_acked

    @on_batch_acked.setter
    def on_batch_acked(self, hook: AckHook | None) -> None:
        self._measurements.on_batch_acked = hook

    @property
    def lanes(self) -> LaneFigures | None:
        """Both measurement lanes (back-fill and live) as the last tick left them; None before it."""
        return self._measurements.figures

    # -- control -------------------------------------------------------------------------------

    def request_stop(self) -> None:
        """Finish the batches in flight, then end the tick (safe from a signal handler)."""
        self._stop.set()

    @property
    def stop_requested(self) -> bool:
        return self._stop.is_set()

    # -- the tick ------------------------------------------------------------------------------

    def tick(self) -> TickReport:
        """One pass over every resource; never raises for server or source failures (see the report)."""
        report = TickReport()
        self.state.heartbeat()
        if self._token.refused():
            report.results = [ResourceResult(name, Outcome.BLOCKED) for name in RESOURCES]
            return report
        try:
            for reference in REFERENCE_SETS:
                if self.stop_requested:
                    report.results.append(ResourceResult(reference.name, Outcome.STOPPED))
                    continue
                parent = reference.parent
                if parent is not None and not report.result(parent.name).outcome.in_sync:
                    report.results.append(
                        ResourceResult(reference.name, Outcome.SKIPPED, detail=f"{parent.name} not in sync")
                    )
                    continue
                report.results.append(self._references.push(reference))
            if self.stop_requested:
                report.results.append(ResourceResult(MEASUREMENTS, Outcome.STOPPED))
            else:
                report.results.append(self._measurements.push(report))
        except TokenRefused as refused:
            self._token.record_refusal(refused.error)
            done = {r.resource for r in report.results}
            report.results.extend(
                ResourceResult(name, Outcome.BLOCKED, error=refused.error.detailed())
                for name in RESOURCES
                if name not in done
            )
        quiet = all(r.outcome in (Outcome.UNCHANGED, Outcome.UP_TO_DATE) for r in report.results)
        _LOGGER.log(logging.DEBUG if quiet else logging.INFO, "tick: %s", report.summary())
        if report.progress is not None:
            # fleet-push prints it on stdout (`report.progress`); at INFO a terminal showing
            # both streams would read every progress line twice.
            _LOGGER.debug("%s", report.progress)
        return report
