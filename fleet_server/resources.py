"""The kinds of data a portal pushes, named once for every layer (sync status, locks, the wire)."""

from __future__ import annotations

from enum import StrEnum


class Resource(StrEnum):
    """A pushed resource, in the order the pusher sends them (and the detail view lists them).

    The values are stored (`sync_status.resource`, checked by a constraint) and shown to
    operators, so they never change.
    """

    SITES = "sites"
    DEVICES = "devices"
    MUNICIPALITIES = "municipalities"
    TARIFFS = "tariffs"
    MEASUREMENTS = "measurements"


REFERENCE_RESOURCES = (Resource.SITES, Resource.DEVICES, Resource.MUNICIPALITIES, Resource.TARIFFS)
