"""The resource table: push order, who depends on whom, and the names the push state stores."""

from __future__ import annotations

from fleet_client.resources import MEASUREMENTS, REFERENCE_SETS, RESOURCES


def test_push_order_and_dependencies() -> None:
    assert RESOURCES == ("sites", "devices", "municipalities", "tariffs", "measurements")
    assert RESOURCES[-1] == MEASUREMENTS
    parents = {s.name: s.parent.name for s in REFERENCE_SETS if s.parent is not None}
    assert parents == {"devices": "sites", "tariffs": "municipalities"}


def test_every_parent_is_pushed_before_its_dependants() -> None:
    seen: set[str] = set()
    for reference in REFERENCE_SETS:
        assert reference.parent is None or reference.parent.name in seen, reference.name
        seen.add(reference.name)
