"""The one paging rule: page sizes, keyset pages, tokens bound to their list, pages cut to a byte budget."""

from __future__ import annotations

import pytest
from fleet.v1 import resources_pb2 as res
from hypothesis import given
from hypothesis import strategies as st

from fleet_server.domain.paging import CUSTOMER_PAGES, REFERENCE_PAGES, Page, PageSizes, cut
from fleet_server.errors import InvalidArgument, Reason
from fleet_server.services.paging_wire import (
    Listing,
    decode_code_token,
    decode_id_token,
    encode_page,
    encode_token,
)


def test_page_sizes_follow_aip_158():
    sizes = PageSizes(default=100, maximum=1000)
    assert [sizes.size(n) for n in (0, 1, 100, 999, 1000, 1001, 2**31 - 1)] == [
        100,
        1,
        100,
        999,
        1000,
        1000,
        1000,
    ]
    with pytest.raises(InvalidArgument) as error:
        sizes.size(-1)
    assert error.value.message == "page_size: must not be negative"
    assert (CUSTOMER_PAGES.default, REFERENCE_PAGES.default) == (50, 100)


def test_a_page_read_with_one_extra_row_knows_that_more_follow():
    assert cut([1, 2, 3, 4], 3, total_size=9) == Page([1, 2, 3], more=True, total_size=9)
    assert cut([1, 2, 3], 3) == Page([1, 2, 3], more=False)
    assert cut([], 3) == Page([], more=False)


@given(st.sampled_from([Listing.SITES, Listing.DEVICES, Listing.TARIFFS]), st.integers(1, 2**63 - 1))
def test_an_id_token_continues_its_own_list_of_its_own_customer(listing, after):
    token = encode_token(listing, "ACME", after)
    assert decode_id_token(token, listing, "ACME") == after
    with pytest.raises(InvalidArgument):
        decode_id_token(token, listing, "GLOBEX")
    with pytest.raises(InvalidArgument):
        decode_id_token(token, Listing.MUNICIPALITIES, "ACME")


def test_a_customer_token_round_trips_and_no_token_is_the_first_page():
    assert decode_code_token(encode_token(Listing.CUSTOMERS, "", "ACME"), Listing.CUSTOMERS) == "ACME"
    assert decode_code_token("", Listing.CUSTOMERS) is None
    assert decode_id_token("", Listing.DEVICES, "ACME") is None


def test_a_refused_token_names_the_field_and_the_reason():
    with pytest.raises(InvalidArgument) as error:
        decode_id_token("nonsense", Listing.DEVICES, "ACME")
    assert error.value.reason == Reason.PAGE_TOKEN_INVALID
    assert [v.field for v in error.value.violations] == ["page_token"]


def _device(id: int, name_length: int = 10) -> res.Device:
    return res.Device(id=id, site_id=1, name="n" * name_length)


def _page(ids: list[int], more: bool, name_length: int = 10) -> Page[res.Device]:
    return Page([_device(i, name_length) for i in ids], more=more)


def _by_id(device: res.Device) -> int:
    return device.id


def _same(device: res.Device) -> res.Device:
    return device


def test_a_page_within_the_budget_is_sent_whole():
    messages, token = encode_page(_page([1, 2, 3], more=False), _same, _by_id, Listing.DEVICES, "ACME")
    assert ([m.id for m in messages], token) == ([1, 2, 3], "")
    messages, token = encode_page(_page([1, 2, 3], more=True), _same, _by_id, Listing.DEVICES, "ACME")
    assert decode_id_token(token, Listing.DEVICES, "ACME") == 3


def test_a_page_over_the_budget_stops_and_its_token_continues_after_the_last_item_sent():
    each = 2 + _device(1, 100).ByteSize()  # tag and length prefix, then the device
    page = _page([1, 2, 3, 4, 5], more=False, name_length=100)
    messages, token = encode_page(page, _same, _by_id, Listing.DEVICES, "ACME", budget=2 * each)
    assert [m.id for m in messages] == [1, 2]
    assert decode_id_token(token, Listing.DEVICES, "ACME") == 2
    exact, _ = encode_page(page, _same, _by_id, Listing.DEVICES, "ACME", budget=2 * each + 1)
    assert len(exact) == 2


def test_a_page_always_holds_one_item_however_large():
    messages, token = encode_page(
        _page([1, 2], more=False, name_length=500), _same, _by_id, Listing.DEVICES, "ACME", budget=10
    )
    assert [m.id for m in messages] == [1]
    assert decode_id_token(token, Listing.DEVICES, "ACME") == 1
