"""Fixtures of the end-to-end tier: the real `fleet-server` as a child process."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.process import ServerProcess


@pytest.fixture(scope="module")
def fleet_server(database_url: str) -> Iterator[ServerProcess]:
    """One `fleet-server serve` for a module's tests (tests that want empty tables ask for `db`).

    The server keeps nothing between calls that emptied tables would contradict, so starting it
    once per module costs a test nothing and saves a process start each.
    """
    with ServerProcess(database_url) as server:
        yield server
