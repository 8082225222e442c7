"""The collector tuning a serving process applies once it has started."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from fleet_server import collector


@pytest.fixture
def restored_collector() -> Iterator[None]:
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


@pytest.mark.usefixtures("restored_collector")
def test_start_up_objects_are_frozen_and_young_passes_are_rarer() -> None:
    gc.unfreeze()
    _, middle, old = gc.get_threshold()
    made_at_start = [object() for _ in range(3)] + [[n] for n in range(100)]

    collector.tune_for_serving()

    assert gc.get_freeze_count() >= len(made_at_start) - 3  # lists are tracked, plain objects not
    assert gc.get_threshold() == (collector.YOUNG_THRESHOLD, middle, old)
    assert gc.isenabled()  # cycles are still collected, only less often


@pytest.mark.usefixtures("restored_collector")
def test_garbage_left_by_start_up_is_collected_not_frozen() -> None:
    gc.unfreeze()

    class Node:
        def __init__(self) -> None:
            self.me = self

    garbage = weakref.ref(Node())  # a cycle nobody refers to: only the collector can free it
    assert garbage() is not None
    collector.tune_for_serving()

    assert garbage() is None  # frozen, it would live as long as the process
