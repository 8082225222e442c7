"""Token format: prefix, ≥ 32 random bytes, checksum that catches typos, SHA-256 storage form."""

from __future__ import annotations

import hashlib
import math
import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fleet_server.domain.tokens import _ALPHABET, _BODY_LEN, TokenKind, hash_token, kind_of, mint


@pytest.mark.parametrize("kind", list(TokenKind))
def test_minted_token_has_its_prefix_and_is_recognised(kind):
    token = mint(kind)
    assert token.startswith(kind.prefix)
    assert kind_of(token) is kind


def test_prefixes_are_the_documented_ones():
    assert mint(TokenKind.CUSTOMER).startswith("fleet_")
    assert mint(TokenKind.ADMIN).startswith("fleetadm_")
    assert not mint(TokenKind.CUSTOMER).startswith("fleetadm_")


def test_body_carries_at_least_32_random_bytes():
    assert _BODY_LEN * math.log2(len(_ALPHABET)) >= 256
    bodies = {mint(TokenKind.CUSTOMER) for _ in range(200)}
    assert len(bodies) == 200


def test_tokens_are_url_safe():
    allowed = set(string.ascii_letters + string.digits + "_-")
    for kind in TokenKind:
        assert set(mint(kind)) <= allowed


def test_hash_is_sha256_hex_of_the_token():
    token = mint(TokenKind.CUSTOMER)
    assert hash_token(token) == hashlib.sha256(token.encode()).hexdigest()
    assert len(hash_token(token)) == 64
    assert token not in hash_token(token)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "fleet_",
        "fleetadm_",
        "Bearer fleet_abc",
        "ghp_" + "a" * 49,
        "fleet_" + "a" * 48,  # one short
        "fleet_" + "a" * 50,  # one long
        "fleet_" + "!" * 49,  # outside the alphabet
    ],
)
def test_malformed_tokens_have_no_kind(text):
    assert kind_of(text) is None


@settings(max_examples=60, deadline=None)
@given(
    position=st.integers(min_value=0), replacement=st.sampled_from(_ALPHABET), kind=st.sampled_from(TokenKind)
)
def test_any_single_character_typo_is_detected(position, replacement, kind):
    token = mint(kind)
    body_start = len(kind.prefix)
    index = body_start + position % (len(token) - body_start)
    if token[index] == replacement:
        return
    typo = token[:index] + replacement + token[index + 1 :]
    assert kind_of(typo) is None


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=80))
def test_random_text_is_never_taken_for_a_token(text):
    assert kind_of(text) is None
