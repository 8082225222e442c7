"""The table the pusher walks: each resource in push order, and how a reference set is read and pushed.

Per reference set: how it is read from the portal, encoded and pushed, and which parent must be
in sync first; the measurement stream comes last. One table instead of names spliced into
attribute lookups (`getattr(client, f"push_{name}")`): a renamed method or a new resource is
checked by mypy here, and the push order, the dependencies and the names the push state stores
are written down once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from fleet.v1 import resources_pb2 as res
from google.protobuf.message import Message

from fleet_client import wire

if TYPE_CHECKING:
    from fleet_client.client import IngestClient
    from fleet_client.source import Source

RowT = TypeVar("RowT")
MessageT = TypeVar("MessageT", bound=Message)


class SnapshotResponse(Protocol):
    """What every reference push answers with (the tariff push adds `periods_written`)."""

    @property
    def summary(self) -> res.SyncSummary: ...


@dataclass(frozen=True)
class ReferenceSet(Generic[RowT, MessageT]):
    """One reference resource, pushed as a complete snapshot.

    `read` asks the portal for every row, `encode` turns a row into its `fleet.v1` message and
    `push` streams the whole snapshot through the client. `parent` is the set that must be in
    sync this tick before this one is attempted: a device names its site and a tariff its
    municipality, so pushing them while the parent is broken only earns FAILED_PRECONDITION.
    Every set is hashed the same way (`fleet_client.snapshot`), so hashing is not a column here.
    """

    name: str
    read: Callable[[Source], Sequence[RowT]]
    encode: Callable[[RowT], MessageT]
    push: Callable[[IngestClient, Sequence[MessageT]], SnapshotResponse]
    parent: ReferenceSet[Any, Any] | None = None

    def messages(self, source: Source) -> list[MessageT]:
        """The snapshot as it goes on the wire, in id order whatever order the portal read it in."""
        return sorted((self.encode(row) for row in self.read(source)), key=_message_id)


def _message_id(message: Message) -> int:
    return int(message.id)  # type: ignore[attr-defined]  # every reference message has an id


SITES = ReferenceSet(
    "sites",
    read=lambda source: source.sites(),
    encode=wire.site,
    push=lambda client, sites: client.push_sites(sites),
)
DEVICES = ReferenceSet(
    "devices",
    read=lambda source: source.devices(),
    encode=wire.device,
    push=lambda client, devices: client.push_devices(devices),
    parent=SITES,
)
MUNICIPALITIES = ReferenceSet(
    "municipalities",
    read=lambda source: source.municipalities(),
    encode=wire.municipality,
    push=lambda client, municipalities: client.push_municipalities(municipalities),
)
TARIFFS = ReferenceSet(
    "tariffs",
    read=lambda source: source.tariffs(),
    encode=wire.tariff,
    push=lambda client, tariffs: client.push_tariffs(tariffs),
    parent=MUNICIPALITIES,
)

REFERENCE_SETS: tuple[ReferenceSet[Any, Any], ...] = (SITES, DEVICES, MUNICIPALITIES, TARIFFS)
"""In push order: every parent comes before the sets that need it."""

MEASUREMENTS = "measurements"
"""Pushed last, on its own stream, from a keyset cursor rather than as a snapshot."""

RESOURCES: tuple[str, ...] = (*(s.name for s in REFERENCE_SETS), MEASUREMENTS)
"""Every resource the push state keeps a row for, in push order."""
