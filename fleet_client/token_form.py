"""Whether FLEET_TOKEN can be a customer token at all, decided before anything is dialled.

A customer token is `fleet_`, 43 base62 characters, and a 6-character base62 CRC32 of those 43
(the server mints them; the checksum exists so a typo is caught without a round trip). A
placeholder pasted from the docs (`fleet_…`), a token cut short, an operator's `fleetadm_`
token or one with a stray character is refused here with a line saying which, instead of
reaching gRPC (which rejects a non-ASCII header with an internal error) or the server.
"""

from __future__ import annotations

import zlib

from fleet_client.errors import ConfigurationError

CUSTOMER_PREFIX = "fleet_"
ADMIN_PREFIX = "fleetadm_"
_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_BODY_LEN = 43
_CHECK_LEN = 6
_TOKEN_LEN = len(CUSTOMER_PREFIX) + _BODY_LEN + _CHECK_LEN
_WHERE = "paste the whole token `fleetctl customers create` (or `rotate-token`) printed"


def _base62(number: int, width: int) -> str:
    digits = []
    while number:
        number, rem = divmod(number, 62)
        digits.append(_ALPHABET[rem])
    return "".join(reversed(digits)).rjust(width, "0")


def check_customer_token(token: str, setting: str = "FLEET_TOKEN") -> None:
    """Raise `ConfigurationError` naming what is wrong with `token`'s form; never echoes the token."""
    if token.startswith(ADMIN_PREFIX):
        raise ConfigurationError(
            f"{setting} is an operator token ({ADMIN_PREFIX}…); fleet-push needs the customer's token "
            f"({CUSTOMER_PREFIX}…)"
        )
    if not token.startswith(CUSTOMER_PREFIX):
        raise ConfigurationError(
            f"{setting} is not a customer token (they start with {CUSTOMER_PREFIX}); {_WHERE}"
        )
    rest = token[len(CUSTOMER_PREFIX) :]
    stray = sorted({c for c in rest if c not in _ALPHABET})
    if stray:
        shown = ", ".join(repr(c) if c.isprintable() and c.isascii() else f"U+{ord(c):04X}" for c in stray)
        raise ConfigurationError(
            f"{setting} holds characters a token never has ({shown}): a placeholder or a damaged "
            f"copy; {_WHERE}"
        )
    if len(rest) != _BODY_LEN + _CHECK_LEN:
        raise ConfigurationError(
            f"{setting} has {len(token)} characters, a customer token {_TOKEN_LEN}; {_WHERE}"
        )
    body, check = rest[:_BODY_LEN], rest[_BODY_LEN:]
    if _base62(zlib.crc32(body.encode("ascii")), _CHECK_LEN) != check:
        raise ConfigurationError(f"{setting} fails its checksum: a character was mistyped; {_WHERE}")
