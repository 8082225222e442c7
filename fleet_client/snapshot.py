"""Canonical hashing of a reference snapshot, so an unchanged set is never sent again.

The hash is taken over exactly what would go on the wire: the `fleet.v1` messages in id order,
rendered as protobuf's canonical JSON with sorted keys. Two reads of the same portal data give
the same hash however the source ordered its rows, and any change the server would see changes
the hash.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable

from google.protobuf import json_format
from google.protobuf.message import Message


def canonical_json(messages: Iterable[Message]) -> str:
    """The messages as stable JSON: sorted by `id`, keys sorted, no whitespace."""
    ordered = sorted(messages, key=lambda m: m.id)  # type: ignore[attr-defined]
    plain = [json_format.MessageToDict(m, preserving_proto_field_name=True) for m in ordered]
    return json.dumps(plain, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def snapshot_hash(messages: Iterable[Message]) -> str:
    """SHA-256 (hex) of `canonical_json(messages)`."""
    return hashlib.sha256(canonical_json(messages).encode("utf-8")).hexdigest()
