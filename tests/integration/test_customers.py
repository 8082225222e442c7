"""FleetAdminService customer lifecycle through the wire: create, get, list, (de)activate, bad input.

Every rejected request is checked for its status code, its message (with the field path), its
`BadRequest` field list where there is one, and an unchanged database.
"""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest
from fleet.v1 import admin_service_pb2 as pb
from sqlalchemy import Engine, insert, select

from fleet_server.db.models import Customer
from tests.support.clients import Stubs, bad_request_fields, bearer, error_reason


def _customers(engine: Engine) -> list[tuple[Any, ...]]:
    """The whole customers table, every column: the 'database unchanged' oracle."""
    with engine.connect() as conn:
        return [tuple(row) for row in conn.execute(select(Customer.__table__).order_by(Customer.id))]


def _fails(call: Any, request: Any, token: str, code: grpc.StatusCode) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as err:
        call(request, metadata=bearer(token), timeout=10)
    assert err.value.code() == code, err.value.details()
    return err.value


def test_create_returns_the_customer_and_a_token_stored_only_as_its_hash(stubs, admin_token, engine):
    reply = stubs.admin.CreateCustomer(
        pb.CreateCustomerRequest(code="ACME", name="  Acme Ltd  "), metadata=bearer(admin_token), timeout=10
    )
    assert reply.token.startswith("fleet_")
    customer = reply.customer
    assert (customer.code, customer.name, customer.is_active) == ("ACME", "Acme Ltd", True)
    assert customer.id > 0
    assert customer.token_issued_at == customer.created_at
    assert not customer.HasField("previous_token_expires_at")
    with engine.connect() as conn:
        row = conn.execute(select(Customer).where(Customer.code == "ACME")).one()
    assert row.token_hash == hashlib.sha256(reply.token.encode()).hexdigest()
    assert row.previous_token_hash is None
    assert row.previous_token_expires_at is None
    assert reply.token not in " ".join(str(v) for v in row)


@pytest.mark.parametrize("code", ["acme", "A", "A" * 33, "AC ME", "ACMÉ", "AC.ME", ""])
def test_create_with_a_bad_code_is_invalid_argument_and_writes_nothing(stubs, admin_token, engine, code):
    before = _customers(engine)
    error = _fails(
        stubs.admin.CreateCustomer,
        pb.CreateCustomerRequest(code=code, name="Acme"),
        admin_token,
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert error.details() == "code: must match [A-Z0-9_-]{2,32}"
    assert bad_request_fields(error) == ["code"]
    assert _customers(engine) == before


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("", "name: must not be empty"),
        ("   ", "name: must not be empty"),
        ("x" * 257, "name: must be at most 256 characters (got 257)"),
        ("x" * 4_000_000, "name: must be at most 256 characters (got 4,000,000)"),
        ("Acme\x00Ltd", "name: must not contain NUL characters"),
    ],
)
def test_create_with_a_bad_name_is_invalid_argument(stubs, admin_token, engine, name, message):
    error = _fails(
        stubs.admin.CreateCustomer,
        pb.CreateCustomerRequest(code="ACME", name=name),
        admin_token,
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert error.details().startswith(message)
    assert bad_request_fields(error) == ["name"]
    assert error_reason(error) == "INVALID_ARGUMENT"
    assert _customers(engine) == []


def test_create_reports_every_bad_field_at_once(stubs, admin_token, engine):
    error = _fails(
        stubs.admin.CreateCustomer,
        pb.CreateCustomerRequest(code="x", name=""),
        admin_token,
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert bad_request_fields(error) == ["code", "name"]
    assert error.details() == "code: must match [A-Z0-9_-]{2,32} (and 1 more)"
    assert _customers(engine) == []


def test_create_with_a_taken_code_is_already_exists_and_keeps_the_original(
    stubs, admin_token, engine, new_customer
):
    new_customer("ACME", "Original")
    before = _customers(engine)
    error = _fails(
        stubs.admin.CreateCustomer,
        pb.CreateCustomerRequest(code="ACME", name="Impostor"),
        admin_token,
        grpc.StatusCode.ALREADY_EXISTS,
    )
    assert error.details() == "customer code ACME is taken"
    assert error_reason(error) == "CUSTOMER_CODE_TAKEN"
    assert _customers(engine) == before


def test_get_returns_the_customer(stubs, admin_token, new_customer):
    created = new_customer("ACME")
    reply = stubs.admin.GetCustomer(
        pb.GetCustomerRequest(code="ACME"), metadata=bearer(admin_token), timeout=10
    )
    assert (reply.customer.id, reply.customer.code, reply.customer.is_active) == (created.id, "ACME", True)


def test_get_unknown_code_is_not_found(stubs, admin_token, new_customer):
    new_customer("ACME")
    error = _fails(
        stubs.admin.GetCustomer, pb.GetCustomerRequest(code="NOPE"), admin_token, grpc.StatusCode.NOT_FOUND
    )
    assert error.details() == "no customer with code NOPE"
    assert error_reason(error) == "CUSTOMER_NOT_FOUND"


@pytest.mark.parametrize(
    ("call", "request_type"),
    [
        ("GetCustomer", pb.GetCustomerRequest),
        ("RotateCustomerToken", pb.RotateCustomerTokenRequest),
        ("ActivateCustomer", pb.ActivateCustomerRequest),
        ("DeactivateCustomer", pb.DeactivateCustomerRequest),
        ("DeleteCustomer", pb.DeleteCustomerRequest),
    ],
)
def test_a_malformed_code_is_invalid_argument_on_every_call_naming_one(
    stubs, admin_token, engine, new_customer, call, request_type
):
    new_customer("ACME")
    before = _customers(engine)
    error = _fails(
        getattr(stubs.admin, call), request_type(code="acme"), admin_token, grpc.StatusCode.INVALID_ARGUMENT
    )
    assert error.details() == "code: must match [A-Z0-9_-]{2,32} (did you mean ACME?)"
    assert bad_request_fields(error) == ["code"]
    assert _customers(engine) == before


@pytest.mark.parametrize(
    ("call", "request_type"),
    [
        ("RotateCustomerToken", pb.RotateCustomerTokenRequest),
        ("ActivateCustomer", pb.ActivateCustomerRequest),
        ("DeactivateCustomer", pb.DeactivateCustomerRequest),
        ("DeleteCustomer", pb.DeleteCustomerRequest),
    ],
)
def test_an_unknown_code_is_not_found_on_every_change(
    stubs, admin_token, engine, new_customer, call, request_type
):
    new_customer("ACME")
    before = _customers(engine)
    error = _fails(
        getattr(stubs.admin, call), request_type(code="NOPE"), admin_token, grpc.StatusCode.NOT_FOUND
    )
    assert error.details() == "no customer with code NOPE"
    assert _customers(engine) == before


def test_deactivate_and_activate_flip_is_active_and_are_idempotent(stubs, admin_token, new_customer):
    new_customer("ACME")
    meta = bearer(admin_token)
    for _ in range(2):
        reply = stubs.admin.DeactivateCustomer(
            pb.DeactivateCustomerRequest(code="ACME"), metadata=meta, timeout=10
        )
        assert reply.customer.is_active is False
    assert (
        stubs.admin.GetCustomer(pb.GetCustomerRequest(code="ACME"), metadata=meta).customer.is_active is False
    )
    for _ in range(2):
        reply = stubs.admin.ActivateCustomer(
            pb.ActivateCustomerRequest(code="ACME"), metadata=meta, timeout=10
        )
        assert reply.customer.is_active is True
    assert (
        stubs.admin.GetCustomer(pb.GetCustomerRequest(code="ACME"), metadata=meta).customer.is_active is True
    )


# --- ListCustomers (AIP-158) ---


def _list_all(stubs: Stubs, token: str, page_size: int) -> list[list[str]]:
    pages: list[list[str]] = []
    page_token = ""
    while True:
        reply = stubs.admin.ListCustomers(
            pb.ListCustomersRequest(page_size=page_size, page_token=page_token),
            metadata=bearer(token),
            timeout=10,
        )
        pages.append([c.code for c in reply.customers])
        page_token = reply.next_page_token
        if not page_token:
            return pages
        assert len(pages) < 100, "the list never ended"


def test_list_pages_by_code_and_an_empty_token_ends_the_list(stubs, admin_token, new_customer):
    codes = ["GAMMA", "ALPHA", "DELTA", "BETA", "ZETA", "EPSILON", "ETA"]
    for code in codes:
        new_customer(code)
    pages = _list_all(stubs, admin_token, 3)
    assert pages == [["ALPHA", "BETA", "DELTA"], ["EPSILON", "ETA", "GAMMA"], ["ZETA"]]


def test_list_exactly_one_full_page_has_no_next_token(stubs, admin_token, new_customer):
    for code in ("AA", "BB", "CC"):
        new_customer(code)
    reply = stubs.admin.ListCustomers(pb.ListCustomersRequest(page_size=3), metadata=bearer(admin_token))
    assert [c.code for c in reply.customers] == ["AA", "BB", "CC"]
    assert reply.next_page_token == ""


def test_list_of_no_customers_is_one_empty_page(stubs, admin_token):
    reply = stubs.admin.ListCustomers(pb.ListCustomersRequest(), metadata=bearer(admin_token))
    assert list(reply.customers) == []
    assert reply.next_page_token == ""


def test_list_keyset_is_stable_when_customers_are_added_between_pages(stubs, admin_token, new_customer):
    for code in ("BB", "DD", "FF", "HH"):
        new_customer(code)
    meta = bearer(admin_token)
    first = stubs.admin.ListCustomers(pb.ListCustomersRequest(page_size=2), metadata=meta)
    assert [c.code for c in first.customers] == ["BB", "DD"]
    new_customer("AA")  # sorts before the cursor: must not shift the next page
    new_customer("EE")  # sorts after it: must appear
    second = stubs.admin.ListCustomers(
        pb.ListCustomersRequest(page_size=10, page_token=first.next_page_token), metadata=meta
    )
    assert [c.code for c in second.customers] == ["EE", "FF", "HH"]


def _bulk_customers(engine: Engine, count: int) -> None:
    """Many customers at once (the list limits are in the hundreds), straight into the table."""
    now = datetime.now(UTC)
    rows = [
        {
            "code": f"C{i:05d}",
            "name": f"Customer {i}",
            "is_active": True,
            "created_at": now,
            "token_hash": hashlib.sha256(f"bulk-{i}".encode()).hexdigest(),
            "token_issued_at": now,
        }
        for i in range(count)
    ]
    with engine.begin() as conn:
        conn.execute(insert(Customer), rows)


def test_list_page_size_zero_means_the_default_of_50_and_large_sizes_are_clamped_to_1000(
    stubs, admin_token, engine
):
    _bulk_customers(engine, 1003)
    meta = bearer(admin_token)
    default = stubs.admin.ListCustomers(pb.ListCustomersRequest(page_size=0), metadata=meta, timeout=10)
    assert len(default.customers) == 50
    assert default.next_page_token
    clamped = stubs.admin.ListCustomers(pb.ListCustomersRequest(page_size=5000), metadata=meta, timeout=10)
    assert len(clamped.customers) == 1000
    assert clamped.next_page_token
    rest = stubs.admin.ListCustomers(
        pb.ListCustomersRequest(page_size=5000, page_token=clamped.next_page_token), metadata=meta, timeout=10
    )
    assert [c.code for c in rest.customers] == ["C01000", "C01001", "C01002"]
    assert rest.next_page_token == ""


def test_list_negative_page_size_is_invalid_argument(stubs, admin_token, new_customer):
    new_customer("ACME")
    error = _fails(
        stubs.admin.ListCustomers,
        pb.ListCustomersRequest(page_size=-1),
        admin_token,
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert error.details() == "page_size: must not be negative"
    assert bad_request_fields(error) == ["page_size"]


def _b64(value: bytes) -> str:
    return base64.urlsafe_b64encode(value).decode().rstrip("=")


@pytest.mark.parametrize(
    "page_token",
    [
        "garbage!!",
        "bm90IGpzb24",  # base64 of "not json"
        _b64(b"\xff\xfe"),
        _b64(json.dumps([1, 2]).encode()),
        _b64(json.dumps({"v": 1, "after": "ACME"}).encode()),  # the format before tokens named their list
        _b64(json.dumps({"v": 2, "after": "ACME"}).encode()),
        _b64(json.dumps({"v": 3, "list": "ListCustomers", "of": "", "after": "ACME"}).encode()),
        _b64(json.dumps({"v": 2, "list": "ListCustomers", "of": "", "after": "lower"}).encode()),
        _b64(json.dumps({"v": 2, "list": "ListCustomers", "of": "", "after": 7}).encode()),
        _b64(json.dumps({"v": 2, "list": "ListCustomers", "of": ""}).encode()),
        _b64(json.dumps({"v": 2, "list": "ListCustomers", "of": "", "after": "ACME", "x": 1}).encode()),
        "A" * 300,
    ],
)
def test_list_with_a_page_token_the_server_never_issued_is_invalid_argument(
    stubs, admin_token, new_customer, page_token
):
    new_customer("ACME")
    error = _fails(
        stubs.admin.ListCustomers,
        pb.ListCustomersRequest(page_token=page_token),
        admin_token,
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert error.details().startswith("page_token: is not a page token")
    assert bad_request_fields(error) == ["page_token"]
    assert error_reason(error) == "PAGE_TOKEN_INVALID"


def test_list_shows_the_grace_window_only_while_it_is_open(
    make_server, fake_clock, admin_token, new_customer
):
    new_customer("ACME")
    server = make_server(clock=fake_clock)
    client = Stubs.connect(server.target)
    try:
        meta = bearer(admin_token)
        client.admin.RotateCustomerToken(pb.RotateCustomerTokenRequest(code="ACME"), metadata=meta)
        listed = client.admin.ListCustomers(pb.ListCustomersRequest(), metadata=meta).customers[0]
        expected = fake_clock.now() + timedelta(hours=24)
        assert listed.previous_token_expires_at.ToDatetime().replace(tzinfo=expected.tzinfo) == expected
        fake_clock.advance(timedelta(hours=24))
        listed = client.admin.ListCustomers(pb.ListCustomersRequest(), metadata=meta).customers[0]
        assert not listed.HasField("previous_token_expires_at")
    finally:
        client.close()
