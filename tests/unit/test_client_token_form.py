"""FLEET_TOKEN's form, checked before anything is dialled: every minted token passes, the rest say why."""

from __future__ import annotations

import pytest

from fleet_client.errors import ConfigurationError
from fleet_client.token_form import check_customer_token
from fleet_server.domain.tokens import TokenKind, kind_of, mint


def test_every_minted_customer_token_passes() -> None:
    for _ in range(200):
        token = mint(TokenKind.CUSTOMER)
        check_customer_token(token)
        assert kind_of(token) is TokenKind.CUSTOMER  # the server's reading agrees


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: "fleet_…", r"holds characters a token never has \(U\+2026\): a placeholder"),
        (lambda: "fleet_<customer token>", r"holds characters a token never has \(' ', '<', '>'\)"),
        (lambda: mint(TokenKind.ADMIN), r"is an operator token \(fleetadm_…\)"),
        (lambda: "sk_live_abc", r"is not a customer token \(they start with fleet_\)"),
        (lambda: mint(TokenKind.CUSTOMER)[:-1], r"has 54 characters, a customer token 55"),
        (lambda: mint(TokenKind.CUSTOMER) + "x", r"has 56 characters, a customer token 55"),
    ],
)
def test_a_token_of_the_wrong_form_is_refused_with_the_reason(make, message: str) -> None:
    token = make()
    with pytest.raises(ConfigurationError, match=message) as refused:
        check_customer_token(token)
    assert str(refused.value).startswith("FLEET_TOKEN ")
    if len(token) > 12:
        assert token not in str(refused.value)  # never echoed


def test_one_mistyped_character_fails_the_checksum() -> None:
    token = mint(TokenKind.CUSTOMER)
    position = 10
    typo = token[:position] + ("A" if token[position] != "A" else "B") + token[position + 1 :]
    with pytest.raises(ConfigurationError, match="fails its checksum: a character was mistyped"):
        check_customer_token(typo)
    assert kind_of(typo) is None  # the server would refuse it too
