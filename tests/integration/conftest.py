"""Fixtures of the integration tier: a server on a fake clock, the pusher rig against a portal."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine

from fleet_client import portal_schema as t
from fleet_client.backoff import Backoff
from fleet_client.client import CallOptions, FleetClient
from fleet_client.pusher import Pusher, PushOptions
from fleet_client.source import SqlSource
from fleet_client.state import PushState
from fleet_server.clock import FakeClock
from tests.support.client_sync import Counting, CountingInterceptor, Portal, Rig, now_clock
from tests.support.clients import Stubs
from tests.support.inprocess import InProcessServer


@pytest.fixture
def clocked(make_server: Callable[..., InProcessServer], fake_clock: FakeClock) -> Iterator[Stubs]:
    """Stubs of a server whose clock is `fake_clock`: it stands still until the test moves it."""
    client = Stubs.connect(make_server(clock=fake_clock).target)
    yield client
    client.close()


@pytest.fixture
def portal(tmp_path: Path) -> Iterator[Portal]:
    """An empty SQLite portal under `tmp_path`."""
    url = f"sqlite:///{tmp_path / 'portal.db'}"
    engine = create_engine(url)
    t.create_portal_schema(engine)
    yield Portal(url, engine, SqlSource(engine))
    engine.dispose()


@pytest.fixture
def make_rig(tmp_path: Path) -> Iterator[Callable[..., Rig]]:
    """`make_rig(target, token, source, clock=…, rand=…, **PushOptions)`: a locked pusher, RPCs counted."""
    made: list[Rig] = []

    def make(
        target: str,
        token: str,
        source: SqlSource,
        *,
        clock: FakeClock | None = None,
        rand: float = 1.0,
        state_name: str = "state.db",
        **options: Any,
    ) -> Rig:
        clock = clock or now_clock()
        counting = Counting(CountingInterceptor())
        client = FleetClient(
            target, token, channel_factory=counting, options=CallOptions(deadline_s=30, stream_deadline_s=60)
        )
        state = PushState.open(f"sqlite:///{tmp_path / state_name}", clock)
        state.acquire()
        pusher = Pusher(
            source,
            client,
            state,
            options=PushOptions(**options),
            backoff=Backoff(20, 600, lambda: rand),
            clock=clock,
        )
        rig = Rig(pusher, client, state, clock, counting)
        made.append(rig)
        return rig

    yield make
    for rig in made:
        rig.client.close()
        rig.state.release()
        rig.state.close()
