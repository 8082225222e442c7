"""Client figures: how fast fleet_client builds batches, and that an unchanged tick opens no stream."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from fleet_client.buildrate import measure_build_rate
from fleet_client.client import FleetClient
from fleet_client.demo import create_demo_portal
from fleet_client.pusher import Pusher
from fleet_client.source import SqlSource
from fleet_client.state import PushState


def build_rate(rows: int = 200_000) -> dict[str, Any]:
    rate = measure_build_rate(rows)
    return {
        "rows_per_s": rate.rows_per_s,
        "build_rows_per_s": rate.build_rows_per_s,
        "what": f"{rate.rows:,} SQLite portal rows read in keyset pages and built into batches of 500",
    }


def unchanged_snapshot(env: Any) -> dict[str, Any]:
    """Sync the demo portal, then tick again with nothing changed: count reference streams."""
    token = env.customer("BENCH_DEMO")
    with tempfile.TemporaryDirectory() as scratch:
        portal = Path(scratch) / "portal.sqlite"
        create_demo_portal(portal)
        source = SqlSource(f"sqlite:///{portal}")
        state = PushState.open(f"sqlite:///{Path(scratch) / 'state.sqlite'}")
        state.acquire()
        client = FleetClient(env.target, token)
        try:
            pusher = Pusher(source, client, state)
            first = pusher.tick()
            while pusher.tick().rows_sent:  # drain the measurement back-fill
                pass
            second = pusher.tick()
        finally:
            state.release()
            state.close()
            source.close()
            client.close()
    return {
        "streams": second.reference_streams,
        "first_tick_streams": first.reference_streams,
        "what": "demo portal synced, then one more tick with nothing changed",
    }
