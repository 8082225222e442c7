"""ByteBudget: the process's bytes and each holder's share, taken and given back exactly."""

from __future__ import annotations

import pytest

from fleet_server.domain.memory import COST_PER_BYTE, COST_PER_ROW, ByteBudget, Holding, resident_cost
from fleet_server.errors import Reason, ResourceExhausted


def test_a_cost_grows_with_the_serialized_bytes_and_the_rows() -> None:
    assert resident_cost(1000, 10) == COST_PER_BYTE * 1000 + COST_PER_ROW * 10


def test_bytes_are_held_up_to_the_limit_and_no_further() -> None:
    budget = ByteBudget("snapshots", 100, retry_after_ms=500)
    budget.take("a", 60)
    budget.take("b", 40)
    with pytest.raises(ResourceExhausted) as refused:
        budget.take("c", 1)
    assert refused.value.reason == Reason.MEMORY_BUSY
    assert refused.value.retry_after_ms == 500
    assert refused.value.metadata == {"budget": "snapshots", "scope": "server"}
    assert budget.held == 100


def test_a_holder_is_refused_past_its_share_though_the_process_has_room() -> None:
    budget = ByteBudget("snapshots", 100, per_holder=50, retry_after_ms=500)
    budget.take("a", 50)
    with pytest.raises(ResourceExhausted) as refused:
        budget.take("a", 1)
    assert refused.value.metadata == {"budget": "snapshots", "scope": "customer"}
    budget.take("b", 50)
    assert budget.held == 100


def test_given_back_bytes_can_be_taken_again() -> None:
    budget = ByteBudget("snapshots", 100, per_holder=100, retry_after_ms=500)
    budget.take("a", 100)
    budget.give_back("a", 100)
    budget.take("b", 100)
    assert budget.held == 100


def test_a_holder_never_gives_back_more_than_it_holds() -> None:
    budget = ByteBudget("snapshots", 100, retry_after_ms=500)
    budget.take("a", 30)
    budget.take("b", 30)
    budget.give_back("a", 1000)
    assert budget.held == 30


def test_a_limit_of_zero_switches_the_budget_off() -> None:
    budget = ByteBudget("snapshots", 0, per_holder=10, retry_after_ms=500)
    budget.take("a", 10**12)
    assert budget.held == 0


def test_a_holding_releases_what_it_took_once() -> None:
    budget = ByteBudget("batches", 100, retry_after_ms=500)
    holding = Holding(budget, "a")
    holding.take(30)
    holding.take(20)
    assert budget.held == 50
    holding.release()
    holding.release()
    assert budget.held == 0


def test_a_holder_alone_is_never_refused_by_the_total_only_by_its_share() -> None:
    """Else a limit below one full push would lock that push out for good."""
    budget = ByteBudget("snapshots", 100, per_holder=300, retry_after_ms=500)
    budget.take("a", 150)
    budget.take("a", 150)
    with pytest.raises(ResourceExhausted) as refused:
        budget.take("a", 1)
    assert refused.value.metadata["scope"] == "customer"
    with pytest.raises(ResourceExhausted) as refused:
        budget.take("b", 1)
    assert refused.value.metadata["scope"] == "server"
