"""The call budgets of one process: each kind of caller is refused only by its own full budget."""

from __future__ import annotations

import contextlib
import logging

import pytest

from fleet_server.clock import FakeClock
from fleet_server.config import Settings
from fleet_server.errors import Reason, ResourceExhausted
from fleet_server.rpc.admission import RETRY_AFTER_MS, WARN_EVERY_S, Admission, Limits

LIMITS = Limits(per_customer=2, customers=3, operators=2, anonymous_streams=2, anonymous_calls=1)


def _refused(take: contextlib.AbstractContextManager[None]) -> ResourceExhausted:
    with pytest.raises(ResourceExhausted) as info, take:
        pass
    return info.value


def test_a_customer_at_its_own_limit_is_told_so_and_others_still_get_in():
    admission = Admission(LIMITS, FakeClock())
    with admission.customer(1), admission.customer(1):
        refusal = _refused(admission.customer(1))
        assert refusal.reason is Reason.CUSTOMER_CALL_LIMIT
        assert refusal.retry_after_ms == RETRY_AFTER_MS
        assert refusal.metadata == {"limit": "2"}
        assert "this customer already has 2 calls in progress" in refusal.message
        with admission.customer(2):
            assert admission.calls_of(2) == 1
        assert admission.calls_of(1) == 2


def test_the_customers_share_is_shared_but_a_customer_over_its_own_limit_hears_about_its_own():
    admission = Admission(LIMITS, FakeClock())
    with admission.customer(1), admission.customer(1), admission.customer(2):
        assert _refused(admission.customer(3)).reason is Reason.CUSTOMERS_CALL_LIMIT
        assert _refused(admission.customer(1)).reason is Reason.CUSTOMER_CALL_LIMIT
        with admission.operator():  # the operators' share is their own
            pass
        with admission.anonymous(streaming=True):
            pass
    with admission.customer(3):
        assert admission.in_use()["customers"] == 1


def test_operators_full_refuses_operators_only():
    admission = Admission(LIMITS, FakeClock())
    with admission.operator(), admission.operator():
        refusal = _refused(admission.operator())
        assert refusal.reason is Reason.OPERATOR_CALL_LIMIT
        with admission.customer(1):
            pass


def test_anonymous_streams_and_unary_calls_have_separate_budgets():
    admission = Admission(LIMITS, FakeClock())
    with admission.anonymous(streaming=True), admission.anonymous(streaming=True):
        assert _refused(admission.anonymous(streaming=True)).reason is Reason.ANONYMOUS_STREAM_LIMIT
        with admission.anonymous(streaming=False):  # health Check while Watch is full
            assert _refused(admission.anonymous(streaming=False)).reason is Reason.ANONYMOUS_CALL_LIMIT
        with admission.customer(1), admission.operator():
            pass
    assert set(admission.in_use().values()) == {0}


def test_a_slot_is_given_back_when_the_call_fails_and_a_customer_without_calls_is_forgotten():
    admission = Admission(LIMITS, FakeClock())
    for _ in range(5):
        with pytest.raises(RuntimeError), admission.customer(7):
            raise RuntimeError("the handler failed")
    assert admission.calls_of(7) == 0
    assert admission._per_customer == {}
    assert admission.in_use()["customers"] == 0


def test_a_full_budget_is_logged_once_and_then_at_most_once_a_minute_with_a_count(caplog):
    clock = FakeClock()
    admission = Admission(LIMITS, clock)
    caplog.set_level(logging.WARNING, logger="fleet_server.rpc.admission")
    with admission.anonymous(streaming=True), admission.anonymous(streaming=True):
        for _ in range(10):
            _refused(admission.anonymous(streaming=True))
        clock.advance(WARN_EVERY_S)
        _refused(admission.anonymous(streaming=True))
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        "streams without a token: all 2 slots in use, 1 call(s) refused",
        "streams without a token: all 2 slots in use, 10 call(s) refused in the last 60 s",
    ]


def test_the_limits_come_from_the_settings_and_add_up():
    limits = Limits.from_settings(Settings())
    assert limits == Limits(
        per_customer=8, customers=1000, operators=64, anonymous_streams=32, anonymous_calls=64
    )
    assert limits.total() == 1000 + 64 + 32 + 64
    assert Settings().max_concurrent_rpcs > limits.total()
