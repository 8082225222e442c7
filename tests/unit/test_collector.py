"""The collector settings of a serving process, and collection under memory pressure."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from fleet_server import collector
from fleet_server.domain.memory import ByteBudget
from fleet_server.errors import ResourceExhausted


class Node:
    """An object in a reference cycle with itself: garbage only a collection frees."""

    def __init__(self) -> None:
        self.me = self


@pytest.fixture
def restored_collector(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    threshold = gc.get_threshold()
    gc.unfreeze()
    monkeypatch.setattr(collector, "_last_pressure", -collector.PRESSURE_GAP_S)
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


@pytest.mark.usefixtures("restored_collector")
def test_a_serving_process_freezes_start_up_and_passes_rarely() -> None:
    _, middle, old = gc.get_threshold()
    made_at_start = [[n] for n in range(100)]

    collector.tune_for_serving()

    assert gc.get_freeze_count() >= len(made_at_start)
    assert gc.get_threshold() == (collector.YOUNG_THRESHOLD, middle, old)
    assert gc.isenabled()  # cycles are still collected, only less often


@pytest.mark.usefixtures("restored_collector")
def test_garbage_left_by_start_up_is_collected_not_frozen() -> None:
    garbage = weakref.ref(Node())
    assert garbage() is not None

    collector.tune_for_serving()

    assert garbage() is None  # frozen, it would live as long as the process


@pytest.mark.usefixtures("restored_collector")
def test_collection_under_pressure_runs_at_most_once_a_gap() -> None:
    first = weakref.ref(Node())
    assert collector.collect_under_pressure()
    assert first() is None

    second = weakref.ref(Node())
    assert not collector.collect_under_pressure()  # within the gap: nothing runs
    assert second() is not None


@pytest.mark.usefixtures("restored_collector")
def test_a_full_memory_budget_collects_before_it_refuses() -> None:
    budget = ByteBudget("batches", 100, retry_after_ms=1_000)
    budget.take("first", 80)
    left_behind = weakref.ref(Node())  # what a refused call left in a cycle

    with pytest.raises(ResourceExhausted) as refused:
        budget.take("second", 50)

    assert left_behind() is None
    assert refused.value.reason == "MEMORY_BUSY"
    assert budget.held == 80  # nothing taken by the refused call
