"""Token minting and hashing: a recognisable prefix, 32 random bytes, a checksum suffix.

`fleet_…` for customers, `fleetadm_…` for operators, so secret scanners and humans can tell
what leaked. The 6-character CRC32 suffix (GitHub-style) lets a typo be told from an unknown
token without a database round trip. Only `sha256(token)` is ever stored.
"""

from __future__ import annotations

import hashlib
import secrets
import zlib
from enum import Enum

_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_BODY_LEN = 43  # 32 random bytes in base62
_CHECK_LEN = 6


class TokenKind(Enum):
    CUSTOMER = "fleet_"
    ADMIN = "fleetadm_"

    @property
    def prefix(self) -> str:
        return self.value


def _base62(number: int, width: int) -> str:
    digits = []
    while number:
        number, rem = divmod(number, 62)
        digits.append(_ALPHABET[rem])
    return "".join(reversed(digits)).rjust(width, "0")


def _checksum(body: str) -> str:
    return _base62(zlib.crc32(body.encode("ascii")), _CHECK_LEN)


def mint(kind: TokenKind) -> str:
    """A fresh token of `kind`; show it once, store `hash_token(token)`."""
    body = _base62(int.from_bytes(secrets.token_bytes(32), "big"), _BODY_LEN)
    return f"{kind.prefix}{body}{_checksum(body)}"


def hash_token(token: str) -> str:
    """The only form in which a token is stored or compared: SHA-256, hex."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def kind_of(token: str) -> TokenKind | None:
    """The token's kind when it is well-formed (prefix, length, alphabet, checksum), else None."""
    for kind in (TokenKind.ADMIN, TokenKind.CUSTOMER):
        if token.startswith(kind.prefix):
            rest = token[len(kind.prefix) :]
            if len(rest) != _BODY_LEN + _CHECK_LEN or any(c not in _ALPHABET for c in rest):
                return None
            body, check = rest[:_BODY_LEN], rest[_BODY_LEN:]
            return kind if secrets.compare_digest(_checksum(body), check) else None
    return None
