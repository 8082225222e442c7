"""Canonical snapshot hashing: order-independent, sensitive to anything the server would see."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from fleet_client import wire
from fleet_client.rows import PeriodRow, SiteRow, TariffRow
from fleet_client.snapshot import canonical_json, snapshot_hash


def _tariff(*periods: PeriodRow, rate: str = "2.10") -> TariffRow:
    return TariffRow(
        7,
        1,
        "TOU",
        True,
        datetime(2025, 1, 1, tzinfo=UTC),
        None,
        Decimal(rate),
        Decimal("0"),
        Decimal("15"),
        "ZAR",
        periods,
    )


PEAK = PeriodRow(1, "Peak", 31, "17:00", "20:00", Decimal("3.75"))
OFF = PeriodRow(2, "Off-Peak", 96, "00:00", "23:59", Decimal("1.20"))


def test_row_order_does_not_matter() -> None:
    a, b = SiteRow(1, "A"), SiteRow(2, "B")
    assert snapshot_hash([wire.site(a), wire.site(b)]) == snapshot_hash([wire.site(b), wire.site(a)])
    assert snapshot_hash([wire.tariff(_tariff(PEAK, OFF))]) == snapshot_hash(
        [wire.tariff(_tariff(OFF, PEAK))]
    )


def test_every_change_the_server_would_see_changes_the_hash() -> None:
    base = snapshot_hash([wire.site(SiteRow(1, "A"))])
    assert snapshot_hash([wire.site(SiteRow(1, "A", timezone="UTC"))]) != base
    assert snapshot_hash([wire.site(SiteRow(1, "A", municipality_id=0))]) != base  # set-but-zero ≠ unset
    assert snapshot_hash([]) != base
    assert snapshot_hash([wire.tariff(_tariff(PEAK, rate="2.11"))]) != snapshot_hash(
        [wire.tariff(_tariff(PEAK))]
    )


def test_canonical_json_is_stable_text() -> None:
    text = canonical_json([wire.site(SiteRow(2, "B")), wire.site(SiteRow(1, "A", tariff_id=3))])
    assert text == '[{"id":"1","name":"A","tariff_id":"3"},{"id":"2","name":"B"}]'
