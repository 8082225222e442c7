"""What a first-time operator meets in fleetctl: one wording (and a "did you mean") for an unknown
customer, an unknown metric told from an empty range, tables that say what they show and name
what they refer to, JSON that scripts read without conversions, errors in JSON under --json."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest
from fleet.v1 import admin_service_pb2 as apb
from fleet.v1 import query_service_pb2 as qpb
from google.rpc import error_details_pb2

from fleet_server.fleetctl.main import main as fleetctl
from tests.support.clients import Stubs, bearer, error_reason, rich_status
from tests.support.inprocess import InProcessServer
from tests.support.measurements import push, reading, request, ts
from tests.support.reference_data import device, site
from tests.support.reference_data import push as push_reference

T0 = datetime(2025, 9, 1, tzinfo=UTC)
Q = timedelta(minutes=15)


@pytest.fixture
def acme(stubs, new_customer):
    """ACME: site "Head office", devices "Main meter" (1) and "Boiler" (2), 8 quarter-hours of energy."""
    customer = new_customer("ACME")
    push_reference(stubs, customer.token, "sites", [site(1, name="Head office")])
    push_reference(
        stubs, customer.token, "devices", [device(1, 1, name="Main meter"), device(2, 1, name="Boiler")]
    )
    # 0.1 + 0.2 is 0.30000000000000004 in binary: the sums carry float noise unless cleaned.
    rows = [reading(d, T0 + i * Q, 0.1 if i % 2 else 0.2) for i in range(8) for d in (1, 2)]
    push(stubs, customer.token, [request(1, rows)])
    return customer


def _run(server: InProcessServer, admin_token: str, *argv: str) -> int:
    return fleetctl(["--server", server.target, "--admin-token", admin_token, *argv])


def _details(error: grpc.RpcError) -> dict[str, str]:
    """The ErrorInfo metadata of a refusal."""
    status = rich_status(error)
    assert status is not None
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            return dict(info.metadata)
    return {}


# -- unknown customers: one wording everywhere, and the code probably meant ----------------------


def _calls(stubs: Stubs, code: str) -> list[tuple[str, Callable[[Any], Any]]]:
    when: dict[str, Any] = {"start": ts(T0), "end": ts(T0 + timedelta(days=1))}
    return [
        ("GetCustomer", lambda md: stubs.admin.GetCustomer(apb.GetCustomerRequest(code=code), metadata=md)),
        (
            "GetCustomerDetail",
            lambda md: stubs.query.GetCustomerDetail(qpb.GetCustomerDetailRequest(code=code), metadata=md),
        ),
        ("ListDevices", lambda md: stubs.query.ListDevices(qpb.ListDevicesRequest(code=code), metadata=md)),
        (
            "QueryMeasurements",
            lambda md: list(
                stubs.query.QueryMeasurements(
                    qpb.QueryMeasurementsRequest(
                        code=code, metric="energy_kwh", bucket=qpb.BUCKET_HOUR, **when
                    ),
                    metadata=md,
                )
            ),
        ),
        (
            "ComputeCosts",
            lambda md: stubs.query.ComputeCosts(qpb.ComputeCostsRequest(codes=[code], **when), metadata=md),
        ),
    ]


def test_every_lookup_by_code_words_an_unknown_customer_alike(stubs, admin_token, acme):
    for name, call in _calls(stubs, "NOPE"):
        with pytest.raises(grpc.RpcError) as refused:
            call(bearer(admin_token))
        assert refused.value.code() == grpc.StatusCode.NOT_FOUND, name
        assert refused.value.details() == "no customer with code NOPE", name
        assert error_reason(refused.value) == "CUSTOMER_NOT_FOUND", name


def test_a_near_miss_is_answered_with_the_code_it_probably_meant(stubs, admin_token, acme):
    for name, call in _calls(stubs, "ACEM"):
        with pytest.raises(grpc.RpcError) as refused:
            call(bearer(admin_token))
        assert refused.value.details() == "no customer with code ACEM (did you mean ACME?)", name
        assert _details(refused.value)["did_you_mean"] == "ACME", name
    with pytest.raises(grpc.RpcError) as lower:
        stubs.admin.GetCustomer(apb.GetCustomerRequest(code="acme"), metadata=bearer(admin_token))
    assert lower.value.code() == grpc.StatusCode.INVALID_ARGUMENT  # a code can never be lower case
    assert lower.value.details() == "code: must match [A-Z0-9_-]{2,32} (did you mean ACME?)"
    with pytest.raises(grpc.RpcError) as several:
        stubs.query.ComputeCosts(
            qpb.ComputeCostsRequest(codes=["ACME", "ACMF", "ZZZZZZ"], start=ts(T0), end=ts(T0 + Q)),
            metadata=bearer(admin_token),
        )
    assert several.value.details() == "no customers with codes ACMF (did you mean ACME?), ZZZZZZ"


# -- unknown metrics -----------------------------------------------------------------------------


def test_a_metric_the_customer_never_had_is_not_found_naming_those_it_has(stubs, admin_token, acme):
    with pytest.raises(grpc.RpcError) as refused:
        list(
            stubs.query.QueryMeasurements(
                qpb.QueryMeasurementsRequest(
                    code="ACME", metric="energy_kw", start=ts(T0), end=ts(T0 + Q), bucket=qpb.BUCKET_RAW
                ),
                metadata=bearer(admin_token),
            )
        )
    assert refused.value.code() == grpc.StatusCode.NOT_FOUND
    assert refused.value.details() == (
        "customer ACME has no readings of metric energy_kw (did you mean energy_kwh?); it has energy_kwh"
    )
    assert error_reason(refused.value) == "METRIC_UNKNOWN"
    # A known metric over a range without readings is simply empty.
    empty = stubs.query.QueryMeasurements(
        qpb.QueryMeasurementsRequest(
            code="ACME",
            metric="energy_kwh",
            start=ts(T0 - timedelta(days=9)),
            end=ts(T0),
            bucket=qpb.BUCKET_DAY,
        ),
        metadata=bearer(admin_token),
    )
    assert [p for chunk in empty for p in chunk.points] == []


def test_fleetctl_says_an_unknown_metric_is_unknown(server, admin_token, acme, capsys):
    code = _run(
        server,
        admin_token,
        "measurements",
        "ACME",
        "--metric",
        "energy_kw",
        "--from",
        "2025-09-01",
        "--to",
        "2025-09-02",
    )
    captured = capsys.readouterr()
    assert code == 1
    assert captured.err == (
        "fleetctl: NOT_FOUND: customer ACME has no readings of metric energy_kw (did you mean energy_kwh?); "
        "it has energy_kwh\n"
    )
    code = _run(
        server,
        admin_token,
        "measurements",
        "ACME",
        "--metric",
        "energy_kwh",
        "--from",
        "2024-09-01",
        "--to",
        "2024-09-02",
    )
    assert code == 0
    assert capsys.readouterr().out.splitlines()[1:] == ["no readings in range"]


# -- tables that say what they show --------------------------------------------------------------


def test_a_measurement_table_says_whose_what_and_when_and_names_devices(server, admin_token, acme, capsys):
    code = _run(
        server,
        admin_token,
        "measurements",
        "ACME",
        "--metric",
        "energy_kwh",
        "--from",
        "2025-09-01",
        "--to",
        "2025-09-01T02:00Z",
    )
    lines = capsys.readouterr().out.splitlines()
    assert code == 0
    assert lines[0] == (
        "ACME · energy_kwh (kWh) · hourly buckets (UTC) · "
        "2025-09-01 00:00Z to 2025-09-01 02:00Z (end excluded)"
    )
    assert lines[1].split() == ["Device", "Hour", "Readings", "Sum", "Min", "Max"]
    assert lines[3].startswith("Main meter (id 1)  2025-09-01 00:00Z  4         0.6")
    assert lines[5].startswith("Boiler (id 2)      2025-09-01 00:00Z")


def test_the_customer_detail_names_what_its_rows_refer_to(server, admin_token, acme, capsys):
    assert _run(server, admin_token, "customers", "show", "ACME") == 0
    lines = capsys.readouterr().out.splitlines()
    devices = lines[lines.index("Devices (2)") + 3 :][:2]
    assert [line.split()[:5] for line in devices] == [
        ["1", "Head", "office", "(id", "1)"],
        ["2", "Head", "office", "(id", "1)"],
    ]


def test_chart_draws_a_sparkline_per_device(server, admin_token, acme, capsys):
    code = _run(
        server, admin_token, "measurements", "ACME", "--metric", "energy_kwh",
        "--from", "2025-09-01", "--to", "2025-09-01T04:00Z", "--chart",
    )  # fmt: skip
    lines = capsys.readouterr().out.splitlines()
    assert code == 0
    assert lines[1] == "each character: the sum of one hour; scale 0.6 to 0.6 kWh"
    assert lines[2] == "Main meter (id 1)  ▁▁    0.6 to 0.6 kWh, total 1.2 kWh"  # 2 hours with readings of 4
    assert lines[3].startswith("Boiler (id 2)      ▁▁  ")


def test_json_numbers_are_numbers_without_float_noise(server, admin_token, acme, capsys):
    code = _run(
        server, admin_token, "--json", "measurements", "ACME", "--metric", "energy_kwh",
        "--from", "2025-09-01", "--to", "2025-09-01T01:00Z",
    )  # fmt: skip
    points = json.loads(capsys.readouterr().out)["points"]
    assert code == 0
    assert points[0] == {
        "device_id": 1,
        "bucket_start": "2025-09-01T00:00:00Z",
        "count": 4,
        "sum": 0.6,
        "min": 0.1,
        "max": 0.2,
    }


def test_errors_are_json_under_json(server, admin_token, acme, capsys):
    code = _run(server, admin_token, "--json", "customers", "show", "ACEM")
    captured = capsys.readouterr()
    assert code == 1
    assert captured.err == "fleetctl: no customer with code ACEM (did you mean ACME?)\n"  # stdout is captured
    assert json.loads(captured.out) == {
        "error": {
            "message": "no customer with code ACEM (did you mean ACME?)",
            "code": "NOT_FOUND",
            "reason": "CUSTOMER_NOT_FOUND",
        }
    }
    code = _run(
        server,
        admin_token,
        "--json",
        "fleet",
        "summary",
        "--metric",
        "energy_kwh",
        "--from",
        "2025-09-02",
        "--to",
        "2025-09-01",
    )
    assert code == 2
    assert json.loads(capsys.readouterr().out)["error"]["kind"] == "usage"


def test_a_summary_of_a_metric_nobody_has_says_so(server, admin_token, acme, capsys):
    code = _run(
        server,
        admin_token,
        "fleet",
        "summary",
        "--metric",
        "enrgy_kwh",
        "--from",
        "2025-09-01",
        "--to",
        "2025-09-02",
    )
    out = capsys.readouterr().out
    assert code == 0
    assert (
        out.splitlines()[-1]
        == "No customer has readings of enrgy_kwh in this range: is the metric spelt right?"
    )
