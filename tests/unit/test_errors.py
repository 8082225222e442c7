"""The error catalog: one rule for long violation lists, reasons that are plain strings on the wire."""

from __future__ import annotations

import grpc
import pytest
from google.rpc import error_details_pb2

from fleet_server.errors import (
    MAX_LISTED_VIOLATIONS,
    FieldViolation,
    InvalidArgument,
    Reason,
    ResourceExhausted,
    Unauthenticated,
)
from fleet_server.rpc.translate import to_status


def _violations(count: int) -> list[FieldViolation]:
    return [FieldViolation(f"items[{i}].id", "must be > 0") for i in range(count)]


def _bad_request(error: InvalidArgument) -> list[str]:
    (_, packed) = to_status(error).details
    bad = error_details_pb2.BadRequest()
    assert packed.Unpack(bad)
    return [v.field for v in bad.field_violations]


def test_one_violation_is_the_message():
    error = InvalidArgument(_violations(1))
    assert error.message == "items[0].id: must be > 0"
    assert error.total == 1


def test_a_few_violations_are_all_listed_and_counted():
    error = InvalidArgument(_violations(3))
    assert error.message == "items[0].id: must be > 0 (and 2 more)"
    assert _bad_request(error) == ["items[0].id", "items[1].id", "items[2].id"]


def test_a_long_list_is_cut_to_the_cap_and_the_message_counts_all():
    error = InvalidArgument(_violations(MAX_LISTED_VIOLATIONS + 25))
    assert len(error.violations) == MAX_LISTED_VIOLATIONS
    assert _bad_request(error) == [f"items[{i}].id" for i in range(MAX_LISTED_VIOLATIONS)]
    assert error.message == f"items[0].id: must be > 0 (and {MAX_LISTED_VIOLATIONS + 24} more)"


def test_a_caller_that_stopped_collecting_passes_the_total():
    error = InvalidArgument(_violations(2), total=1_000)
    assert len(error.violations) == 2
    assert error.total == 1_000
    assert error.message == "items[0].id: must be > 0 (and 999 more)"


def test_a_total_below_the_list_is_ignored():
    assert InvalidArgument(_violations(4), total=1).total == 4


def test_an_empty_list_is_a_programming_error():
    with pytest.raises(ValueError, match="at least one"):
        InvalidArgument([])


def test_reasons_go_out_as_their_plain_names():
    status = to_status(Unauthenticated("gone", reason=Reason.CUSTOMER_INACTIVE))
    info = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(info)
    assert (info.reason, info.domain) == ("CUSTOMER_INACTIVE", "fleet.v1")
    assert status.code == grpc.StatusCode.UNAUTHENTICATED.value[0]


def test_every_error_class_has_a_reason_from_the_catalog():
    assert ResourceExhausted("full").reason is Reason.RESOURCE_EXHAUSTED
    assert InvalidArgument.single("x", "bad").reason is Reason.INVALID_ARGUMENT
    assert {r.value for r in Reason} == {r.name for r in Reason}
