"""Large customers stay viewable: a bounded GetCustomerDetail and the AIP-158 lists of a customer's data.

The failure reproduced at small scale: a customer whose devices no longer fit one message could
not be viewed at all. Here a client that accepts only 64 KiB per message stands in for gRPC's
4 MiB limit, and a few thousand devices for 120,000.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import pytest
from fleet.v1 import admin_service_pb2 as admin_pb
from fleet.v1 import query_service_pb2 as pb
from fleet.v1 import query_service_pb2_grpc

from fleet_server.auth.policy import Requirement, requirement_for
from fleet_server.domain import listings
from tests.support.clients import Stubs, bad_request_fields, bearer, customer_detail, error_reason, rejected
from tests.support.reference_data import db_state, device, municipality, period, push, site, tariff

SMALL_MESSAGE = 64 * 1024

# What each list RPC is called with, answers with, and which push fills it.
LISTS: dict[str, tuple[str, Any, str]] = {
    "sites": ("ListSites", pb.ListSitesRequest, "sites"),
    "devices": ("ListDevices", pb.ListDevicesRequest, "devices"),
    "municipalities": ("ListMunicipalities", pb.ListMunicipalitiesRequest, "municipalities"),
    "tariffs": ("ListTariffs", pb.ListTariffsRequest, "tariffs"),
}


def _items(resource: str, ids: list[int]) -> list[Any]:
    """Pushable items of `resource` with these ids (devices on site 1, tariffs in municipality 1)."""
    build: dict[str, Callable[[int], Any]] = {
        "sites": site,
        "devices": lambda i: device(i, 1),
        "municipalities": municipality,
        "tariffs": lambda i: tariff(i, 1),
    }
    return [build[resource](i) for i in ids]


def _fill(stubs: Stubs, token: str, resource: str, ids: list[int]) -> None:
    """Make `ids` the customer's `resource`, with the parents they need."""
    if resource == "devices":
        push(stubs, token, "sites", [site(1)])
    if resource == "tariffs":
        push(stubs, token, "municipalities", [municipality(1)])
    push(stubs, token, resource, _items(resource, ids), chunk=2000)


def _ids(resource: str, reply: Any) -> list[int]:
    if resource == "tariffs":
        return [view.tariff.id for view in reply.tariffs]
    return [item.id for item in getattr(reply, resource)]


def _list(stubs: Stubs, token: str, resource: str, **fields: Any) -> Any:
    method, request_type, _ = LISTS[resource]
    return getattr(stubs.query, method)(request_type(**fields), metadata=bearer(token), timeout=30)


def _pages(
    stubs: Stubs, token: str, resource: str, code: str, page_size: int, page_token: str = ""
) -> Iterator[Any]:
    """Every page from `page_token` to the end (the test fails if the list never ends)."""
    for _ in range(1000):
        reply = _list(stubs, token, resource, code=code, page_size=page_size, page_token=page_token)
        yield reply
        page_token = reply.next_page_token
        if not page_token:
            return
    raise AssertionError("the list never ended")


def _b64(payload: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(payload).encode()).decode().rstrip("=")


@pytest.fixture
def small_client(server) -> Iterator[query_service_pb2_grpc.FleetQueryServiceStub]:
    """A query stub whose channel accepts only 64 KiB per message."""
    channel = grpc.insecure_channel(
        server.target, options=[("grpc.max_receive_message_length", SMALL_MESSAGE)]
    )
    yield query_service_pb2_grpc.FleetQueryServiceStub(channel)
    channel.close()


def test_a_customer_with_more_devices_than_a_message_holds_stays_viewable(
    stubs, small_client, new_customer, admin_token
):
    acme = new_customer("ACME")
    count = 3000
    _fill(stubs, acme.token, "devices", list(range(1, count + 1)))
    meta = bearer(admin_token)

    every_device = [d for page in _pages(stubs, admin_token, "devices", "ACME", 1000) for d in page.devices]
    old_shape = pb.GetCustomerDetailResponse(devices=every_device)
    assert old_shape.ByteSize() > SMALL_MESSAGE  # the detail that held every device would not arrive

    detail = small_client.GetCustomerDetail(
        pb.GetCustomerDetailRequest(code="ACME"), metadata=meta, timeout=30
    )
    assert detail.ByteSize() < 8 * 1024
    assert (detail.device_count, detail.site_count) == (count, 1)
    assert [d.id for d in detail.devices] == list(range(1, 101))
    assert detail.next_devices_page_token
    assert detail.next_sites_page_token == ""

    seen = [d.id for d in detail.devices]
    page_token = detail.next_devices_page_token
    while page_token:
        page = small_client.ListDevices(
            pb.ListDevicesRequest(code="ACME", page_size=1000, page_token=page_token),
            metadata=meta,
            timeout=30,
        )
        assert page.total_size == count
        seen += [d.id for d in page.devices]
        page_token = page.next_page_token
    assert seen == list(range(1, count + 1))  # every device exactly once, in id order


@pytest.mark.parametrize("resource", sorted(LISTS))
def test_each_list_pages_by_id_and_an_empty_token_ends_it(stubs, new_customer, admin_token, resource):
    acme = new_customer("ACME")
    _fill(stubs, acme.token, resource, [7, 3, 11, 1, 5, 9, 2])
    pages = list(_pages(stubs, admin_token, resource, "ACME", 3))
    assert [_ids(resource, p) for p in pages] == [[1, 2, 3], [5, 7, 9], [11]]
    assert {p.total_size for p in pages} == {7}


@pytest.mark.parametrize("resource", sorted(LISTS))
def test_the_detail_carries_counts_and_a_first_page_that_its_list_continues(
    stubs, new_customer, admin_token, resource
):
    acme = new_customer("ACME")
    _fill(stubs, acme.token, resource, list(range(1, 106)))
    detail = customer_detail(stubs, admin_token, "ACME")
    singular = {"sites": "site", "devices": "device", "municipalities": "municipality", "tariffs": "tariff"}
    assert getattr(detail, f"{singular[resource]}_count") == 105
    assert _ids(resource, detail) == list(range(1, 101))
    rest = list(
        _pages(stubs, admin_token, resource, "ACME", 0, getattr(detail, f"next_{resource}_page_token"))
    )
    assert [_ids(resource, p) for p in rest] == [[101, 102, 103, 104, 105]]


def test_a_full_last_page_has_no_next_token_and_an_empty_list_is_one_empty_page(
    stubs, new_customer, admin_token
):
    acme = new_customer("ACME")
    new_customer("EMPTY")
    _fill(stubs, acme.token, "sites", [1, 2, 3])
    full = _list(stubs, admin_token, "sites", code="ACME", page_size=3)
    assert (_ids("sites", full), full.next_page_token, full.total_size) == ([1, 2, 3], "", 3)
    empty = _list(stubs, admin_token, "devices", code="EMPTY")
    assert (list(empty.devices), empty.next_page_token, empty.total_size) == ([], "", 0)
    detail = customer_detail(stubs, admin_token, "EMPTY")
    assert (detail.device_count, detail.next_devices_page_token) == (0, "")


def test_page_size_zero_is_the_default_of_100_and_large_sizes_are_clamped_to_1000(
    stubs, new_customer, admin_token
):
    acme = new_customer("ACME")
    _fill(stubs, acme.token, "devices", list(range(1, 1004)))
    default = _list(stubs, admin_token, "devices", code="ACME", page_size=0)
    assert _ids("devices", default) == list(range(1, 101))
    clamped = _list(stubs, admin_token, "devices", code="ACME", page_size=5000)
    assert _ids("devices", clamped) == list(range(1, 1001))
    rest = _list(
        stubs, admin_token, "devices", code="ACME", page_size=5000, page_token=clamped.next_page_token
    )
    assert (_ids("devices", rest), rest.next_page_token) == ([1001, 1002, 1003], "")


def test_the_keyset_is_stable_when_devices_come_and_go_between_pages(stubs, new_customer, admin_token):
    acme = new_customer("ACME")
    _fill(stubs, acme.token, "devices", [10, 20, 30, 40])
    first = _list(stubs, admin_token, "devices", code="ACME", page_size=2)
    assert _ids("devices", first) == [10, 20]
    # 5 sorts before the cursor (must not shift the next page), 20 is gone, 25 sorts after it.
    push(stubs, acme.token, "devices", _items("devices", [5, 10, 25, 30, 40]))
    rest = _list(stubs, admin_token, "devices", code="ACME", page_size=10, page_token=first.next_page_token)
    assert (_ids("devices", rest), rest.total_size) == ([25, 30, 40], 5)


def test_a_page_of_large_items_stops_at_the_byte_budget_and_loses_nothing(stubs, new_customer, admin_token):
    acme = new_customer("ACME")
    push(stubs, acme.token, "sites", [site(1)])
    wide = [device(i, 1, name="n" * 250, serial_number="s" * 250, kind="k" * 250) for i in range(1, 1001)]
    push(stubs, acme.token, "devices", wide, chunk=500)
    pages = list(_pages(stubs, admin_token, "devices", "ACME", 1000))
    assert len(pages) == 2
    assert all(p.ByteSize() <= 520 * 1024 for p in pages)
    assert [i for p in pages for i in _ids("devices", p)] == list(range(1, 1001))


def test_a_page_of_tariffs_stops_before_its_periods_pass_the_budget(
    stubs, new_customer, admin_token, monkeypatch
):
    acme = new_customer("ACME")
    push(stubs, acme.token, "municipalities", [municipality(1, "Phase23 Test City")])
    three = [period(p, f"P{p}", 127, f"0{p}:00", f"0{p + 1}:00", "1.00") for p in (1, 2, 3)]
    push(stubs, acme.token, "tariffs", [tariff(i, 1, three) for i in range(1, 6)])
    monkeypatch.setattr(listings, "PERIODS_PER_PAGE", 7)
    pages = list(_pages(stubs, admin_token, "tariffs", "ACME", 10))
    assert [_ids("tariffs", p) for p in pages] == [[1, 2], [3, 4], [5]]
    view = pages[0].tariffs[0]
    assert (view.municipality_name, [p.id for p in view.tariff.periods]) == ("Phase23 Test City", [1, 2, 3])


def test_a_list_shows_only_that_customers_rows(stubs, new_customer, admin_token):
    acme, globex = new_customer("ACME"), new_customer("GLOBEX")
    _fill(stubs, acme.token, "sites", [1])
    _fill(stubs, globex.token, "sites", [1, 2, 3])
    reply = _list(stubs, admin_token, "sites", code="ACME")
    assert (_ids("sites", reply), reply.total_size, reply.sites[0].name) == ([1], 1, "Site 1")


# --- refusals: status, message, BadRequest, ErrorInfo reason, and nothing changed -------------


@pytest.fixture
def two_customers(stubs, new_customer, engine):
    """ACME and GLOBEX with a few rows of every list; the database state before any refusal."""
    for code in ("ACME", "GLOBEX"):
        token = new_customer(code).token
        for resource in ("devices", "tariffs", "sites", "municipalities"):  # children first: see _fill
            _fill(stubs, token, resource, [1, 2, 3])
    return db_state(engine)


def _refused(stubs: Stubs, admin_token: str, resource: str, **fields: Any) -> grpc.RpcError:
    return rejected(lambda: _list(stubs, admin_token, resource, **fields))


@pytest.mark.parametrize("resource", sorted(LISTS))
def test_a_negative_page_size_is_invalid_argument(stubs, admin_token, engine, two_customers, resource):
    error = _refused(stubs, admin_token, resource, code="ACME", page_size=-1)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details() == "page_size: must not be negative"
    assert bad_request_fields(error) == ["page_size"]
    assert error_reason(error) == "INVALID_ARGUMENT"
    assert db_state(engine) == two_customers


@pytest.mark.parametrize(
    "page_token",
    [
        "garbage!!",
        "A" * 300,
        _b64({"v": 2, "list": "ListDevices", "of": "ACME", "after": 0}),
        _b64({"v": 2, "list": "ListDevices", "of": "ACME", "after": -5}),
        _b64({"v": 2, "list": "ListDevices", "of": "ACME", "after": 2**63}),
        _b64({"v": 2, "list": "ListDevices", "of": "ACME", "after": True}),
        _b64({"v": 2, "list": "ListDevices", "of": "ACME", "after": "3"}),
        _b64({"v": 2, "list": "ListDevices", "of": "ACME", "after": 1.5}),
        _b64({"v": 1, "list": "ListDevices", "of": "ACME", "after": 1}),
        _b64({"v": 2, "list": "ListDevices", "of": 7, "after": 1}),
        _b64({"v": 2, "list": "ListDevices", "after": 1}),
        _b64({"v": 2, "list": "ListEverything", "of": "ACME", "after": 1}),
        _b64({"v": 2, "list": "ListDevices", "of": "<b>acme</b>", "after": 1}),
    ],
)
def test_a_page_token_the_server_never_issued_is_invalid_argument(
    stubs, admin_token, engine, two_customers, page_token
):
    error = _refused(stubs, admin_token, "devices", code="ACME", page_token=page_token)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details() == "page_token: is not a page token from a previous ListDevices response for ACME"
    assert bad_request_fields(error) == ["page_token"]
    assert error_reason(error) == "PAGE_TOKEN_INVALID"
    assert db_state(engine) == two_customers


def test_a_page_token_of_another_customers_listing_is_refused(stubs, admin_token, engine, two_customers):
    globex_page = _list(stubs, admin_token, "devices", code="GLOBEX", page_size=1)
    assert globex_page.next_page_token
    error = _refused(stubs, admin_token, "devices", code="ACME", page_token=globex_page.next_page_token)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details() == (
        "page_token: is not a page token from a previous ListDevices response for ACME "
        "(it continues ListDevices for GLOBEX); send it with the request that returned it, "
        "or start again without one"
    )
    assert bad_request_fields(error) == ["page_token"]
    assert error_reason(error) == "PAGE_TOKEN_INVALID"
    assert db_state(engine) == two_customers


@pytest.mark.parametrize(("issued_by", "used_on"), [("sites", "devices"), ("tariffs", "municipalities")])
def test_a_page_token_of_another_list_is_refused(
    stubs, admin_token, engine, two_customers, issued_by, used_on
):
    issued = _list(stubs, admin_token, issued_by, code="ACME", page_size=1).next_page_token
    error = _refused(stubs, admin_token, used_on, code="ACME", page_token=issued)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert f"(it continues {LISTS[issued_by][0]} for ACME)" in error.details()
    assert error_reason(error) == "PAGE_TOKEN_INVALID"
    assert db_state(engine) == two_customers


def test_list_tokens_and_customer_tokens_do_not_cross(stubs, admin_token, engine, two_customers):
    meta = bearer(admin_token)
    customers_token = stubs.admin.ListCustomers(
        admin_pb.ListCustomersRequest(page_size=1), metadata=meta, timeout=10
    ).next_page_token
    on_sites = _refused(stubs, admin_token, "sites", code="ACME", page_token=customers_token)
    assert "(it continues ListCustomers)" in on_sites.details()
    sites_token = _list(stubs, admin_token, "sites", code="ACME", page_size=1).next_page_token
    on_customers = rejected(
        lambda: stubs.admin.ListCustomers(
            admin_pb.ListCustomersRequest(page_token=sites_token), metadata=meta, timeout=10
        )
    )
    assert on_customers.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "(it continues ListSites for ACME)" in on_customers.details()
    assert error_reason(on_customers) == "PAGE_TOKEN_INVALID"
    assert db_state(engine) == two_customers


@pytest.mark.parametrize("resource", sorted(LISTS))
def test_unknown_and_malformed_codes(stubs, admin_token, two_customers, resource):
    missing = _refused(stubs, admin_token, resource, code="NOPE")
    assert missing.code() == grpc.StatusCode.NOT_FOUND
    assert missing.details() == "no customer with code NOPE"
    assert error_reason(missing) == "CUSTOMER_NOT_FOUND"
    malformed = _refused(stubs, admin_token, resource, code="acme")
    assert malformed.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert bad_request_fields(malformed) == ["code"]


@pytest.mark.parametrize("resource", sorted(LISTS))
def test_a_customer_token_cannot_list(stubs, new_customer, resource):
    assert requirement_for(f"/fleet.v1.FleetQueryService/{LISTS[resource][0]}") is Requirement.ADMIN
    acme = new_customer("ACME")
    error = _refused(stubs, acme.token, resource, code="ACME")
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    assert error_reason(error) == "PERMISSION_DENIED"
