"""`make load`'s own arithmetic: the final count, percentiles, status names, bars, batch keys.

The harness judges the server; these tests make sure a PASS or FAIL it prints comes from the
server's behaviour and not from a slip in the harness.
"""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from fleet.v1 import ingest_service_pb2
from google.protobuf import any_pb2, duration_pb2, timestamp_pb2
from google.rpc import error_details_pb2, status_pb2

from bench.load import report
from bench.load.batches import live_shape, series_shape
from bench.load.ledger import account
from bench.load.plan import Plan
from bench.load.recorder import Recorder, merge_groups
from bench.load.stats import describe_error, percentile

# --- the final count ---------------------------------------------------------------------------


def test_a_clean_run_is_exact() -> None:
    entries = [("A", 1, 100, 1, True, 100, 0), ("A", 2, 100, 1, True, 100, 0), ("B", 1, 50, 1, True, 50, 0)]
    figures = account(entries, {("A", 1): 100, ("A", 2): 100, ("B", 1): 50}, {"A": 200, "B": 50})
    assert figures["exact"]
    assert figures["acked_rows"] == figures["stored_rows"] == figures["accepted_rows"] == 250
    assert figures["lost"] == figures["doubled"] == figures["stored_without_accepted_ack"] == 0


def test_an_acknowledged_batch_missing_from_the_database_is_lost() -> None:
    figures = account([("A", 1, 100, 1, True, 100, 0)], {}, {})
    assert figures["lost_rows"] == 100
    assert not figures["exact"]


def test_a_commit_whose_ack_was_lost_is_counted_but_not_an_error() -> None:
    entries = [
        ("A", 1, 100, 1, False, 0, 0),  # stream broke after the commit, never resent
        ("A", 2, 100, 2, True, 0, 100),  # resent after a lost ack: all duplicates
    ]
    figures = account(entries, {("A", 1): 100, ("A", 2): 100}, {"A": 200})
    assert figures["exact"]
    assert figures["stored_unacked_rows"] == 100
    assert figures["duplicates_after_lost_ack"] == 100
    assert figures["stored_without_accepted_ack"] == 200


def test_an_ack_claiming_more_new_rows_than_the_batch_holds_is_doubled() -> None:
    figures = account([("A", 1, 100, 1, True, 200, 0)], {("A", 1): 100}, {"A": 100})
    assert figures["doubled_rows"] == 100
    assert figures["ack_miscounts"] == 1
    assert not figures["exact"]


def test_half_a_batch_stored_breaks_all_or_nothing() -> None:
    figures = account([("A", 1, 100, 1, False, 0, 0)], {("A", 1): 40}, {"A": 40})
    assert figures["partial_batches"] == 1
    assert not figures["exact"]


def test_rollups_must_count_every_stored_row_once() -> None:
    entries = [("A", 1, 100, 1, True, 100, 0), ("B", 1, 100, 1, True, 100, 0)]
    stored = {("A", 1): 100, ("B", 1): 100}
    figures = account(entries, stored, {"A": 200, "B": 90})
    assert (figures["rollup_over"], figures["rollup_short"]) == (100, 10)
    assert (figures["doubled"], figures["lost"]) == (100, 10)


def test_rows_no_batch_sent_are_stray() -> None:
    figures = account([], {("A", 9): 5}, {"A": 5})
    assert figures["stray_rows"] == 5
    assert not figures["exact"]


# --- figures -----------------------------------------------------------------------------------


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile([3.0], 99) == 3.0
    assert percentile([], 50) is None


class _Refusal(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode, trailing: tuple[tuple[str, Any], ...]) -> None:
        self._code = code
        self._trailing = trailing

    def code(self) -> grpc.StatusCode:
        return self._code

    def trailing_metadata(self) -> tuple[tuple[str, Any], ...]:
        return self._trailing


def _details(*messages: Any) -> bytes:
    status = status_pb2.Status(code=8)
    for message in messages:
        packed = any_pb2.Any()
        packed.Pack(message)
        status.details.append(packed)
    return bytes(status.SerializeToString())


def test_a_refusal_is_named_by_code_and_reason_with_its_retry_hint() -> None:
    info = error_details_pb2.ErrorInfo(reason="ROW_BUDGET_EXHAUSTED", domain="fleet.v1")
    error = _Refusal(
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        (("grpc-status-details-bin", _details(info)), ("retry-after-ms", "250")),
    )
    assert describe_error(error) == ("RESOURCE_EXHAUSTED/ROW_BUDGET_EXHAUSTED", 250)


def test_a_refusal_without_details_is_its_code_and_retry_info_is_read() -> None:
    assert describe_error(_Refusal(grpc.StatusCode.RESOURCE_EXHAUSTED, ())) == ("RESOURCE_EXHAUSTED", None)
    retry = error_details_pb2.RetryInfo(retry_delay=duration_pb2.Duration(seconds=1, nanos=500_000_000))
    error = _Refusal(grpc.StatusCode.UNAVAILABLE, (("grpc-status-details-bin", _details(retry)),))
    assert describe_error(error) == ("UNAVAILABLE", 1500)


def test_a_stalled_attempt_weighs_in_the_percentiles_and_counts_as_a_stall() -> None:
    recorder = Recorder(stall_s=10.0)
    for _ in range(98):
        recorder.answered("fleet/live-backfill", 0.05)
        recorder.latency("fleet/live-backfill", 0.05)
        recorder.status("fleet/live-backfill", "OK")
    recorder.answered("fleet/live-backfill", 12.0)
    recorder.status("fleet/live-backfill", "DEADLINE_EXCEEDED")
    recorder.answered("fleet/live-backfill", 0.01)
    recorder.status("fleet/live-backfill", "RESOURCE_EXHAUSTED")
    groups = merge_groups([recorder.take(), {}])
    figures = report.fleet_figures(groups, Plan(), backfill_at=0.0, end_at=1.0, baseline=1.0)
    live = figures["live_backfill"]
    assert (live["n"], live["acked"], live["max"]) == (100, 98, 12.0)
    assert figures["stalls"] == 1
    assert figures["statuses"] == {"DEADLINE_EXCEEDED": 1, "RESOURCE_EXHAUSTED": 1}
    assert figures["live_attempts"] == 100


def test_the_fleet_ratio_is_against_the_mean_of_the_yardsticks_on_either_side() -> None:
    fleet = {"rows_per_s": 90.0, "ratio": 90.0 / 100.0}
    both = report.with_yardstick(fleet, {"rows_per_s": 100.0}, {"rows_per_s": 80.0})
    assert (both["ratio"], both["ratio_first_baseline"], both["yardstick_rows_per_s"]) == (1.0, 0.9, 90.0)
    # A baseline that measured nothing (its phase failed) is not averaged in as a zero.
    assert report.with_yardstick(fleet, {"rows_per_s": 100.0}, {"rows_per_s": 0.0})["ratio"] == 0.9
    assert report.with_yardstick(fleet, None, {"rows_per_s": 60.0})["ratio"] == 1.5
    assert report.with_yardstick(fleet, None, None) == fleet


def test_the_table_names_both_halves_of_the_yardstick() -> None:
    results: dict[str, Any] = {
        "plan": Plan.quick_plan().as_dict(),
        "errors": [],
        "ramp": [],
        "baseline": {"rows_per_s": 59_092.0},
        "baseline_after": {"rows_per_s": 40_057.0},
    }
    assert "the mean of 59,092 and 40,057 rows/s" in report.render(results)
    del results["baseline_after"]
    assert "the mean of 59,092 rows/s" in report.render(results)


def test_the_table_renders_and_fails_a_run_that_counted_nothing() -> None:
    results: dict[str, Any] = {"plan": Plan.quick_plan().as_dict(), "errors": ["setup: boom"], "ramp": []}
    assert "FAIL" in report.render(results)
    assert not all(report.verdicts(results).values())


# --- keys --------------------------------------------------------------------------------------


def _keys(payload: bytes) -> tuple[set[tuple[int, str, int]], set[int]]:
    request = ingest_service_pb2.PushMeasurementsRequest.FromString(payload)
    keys = {(m.device_id, m.metric, m.time.seconds) for m in request.measurements}
    received = {m.received_at.seconds * 1_000_000 + m.received_at.nanos // 1000 for m in request.measurements}
    return keys, received


@pytest.mark.parametrize(
    "shape",
    [live_shape(100, 1_700_000_000), series_shape(50, 100, 1_600_000_000, 1_700_000_000)],
    ids=["live", "back-fill"],
)
def test_batches_of_a_customer_never_share_a_key_and_carry_their_uid(shape: Any) -> None:
    seen: set[tuple[int, str, int]] = set()
    for uid in (1, 2, 3, 1_000_001):
        batch = shape.make("A", uid)
        keys, received = _keys(batch.payload)
        assert len(keys) == batch.rows == shape.rows
        assert not keys & seen
        assert received == {1_700_000_000 * 1_000_000 + uid}
        seen |= keys


@pytest.mark.parametrize(
    "shape",
    [live_shape(100, 1_700_000_000), series_shape(50, 100, 1_600_000_000, 1_700_000_000)],
    ids=["live", "back-fill"],
)
def test_a_batch_assembled_as_bytes_is_the_request_protobuf_would_build(shape: Any) -> None:
    uid = 1_000_042
    start = shape.t0_s + (uid - 1) * shape.steps * shape.step_s
    received = timestamp_pb2.Timestamp(seconds=shape.received_base_s + 1, nanos=42_000)
    expected = ingest_service_pb2.PushMeasurementsRequest(batch_id=uid)
    for step in range(shape.steps):
        for device in range(1, shape.devices + 1):
            row = expected.measurements.add(device_id=device, metric=shape.metric)
            row.value = (
                0.2 + ((device * 7 + step) % 13) / 40 if shape.metric == "energy_kwh" else 100.0 + device
            )
            row.time.seconds = start + step * shape.step_s
            row.received_at.CopyFrom(received)
    payload = shape.make("A", uid).payload
    assert ingest_service_pb2.PushMeasurementsRequest.FromString(payload) == expected
    assert len(payload) == expected.ByteSize()


def test_every_customer_code_is_distinct_and_valid() -> None:
    codes = Plan().all_codes()
    assert len(codes) == len(set(codes)) == 1 + 10 + 300 + 20 + 100 + 300 + 1000
    assert all(2 <= len(code) <= 32 and code.replace("_", "").isalnum() and code.isupper() for code in codes)
    live = [code for client in range(2, Plan().clients) for code in Plan().live_share(client)]
    assert live == Plan().live_codes()
