"""ComputeCosts over the wire against hand-computed bills."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from fleet.v1 import query_service_pb2 as pb

from fleet_server.rpc.wellknown import to_timestamp
from tests.support.clients import Stubs, bearer
from tests.support.costs import (
    PEAK_OFF_PEAK,
    PeriodSpec,
    TariffSpec,
    add_readings,
    add_site,
    add_tariff,
)

JOHANNESBURG = ZoneInfo("Africa/Johannesburg")
AMSTERDAM = ZoneInfo("Europe/Amsterdam")


def compute(
    stubs: Stubs, token: str, start: datetime, end: datetime, codes: Sequence[str] = ()
) -> pb.ComputeCostsResponse:
    start, end = (t if t.tzinfo else t.replace(tzinfo=UTC) for t in (start, end))
    request = pb.ComputeCostsRequest(codes=list(codes), start=to_timestamp(start), end=to_timestamp(end))
    reply: pb.ComputeCostsResponse = stubs.query.ComputeCosts(request, metadata=bearer(token), timeout=30)
    return reply


def lines(site: pb.SiteCost) -> dict[str, tuple[str, str, str]]:
    """{period name: (kwh, rate, cost)} of a SiteCost."""
    return {p.period_name: (p.kwh, p.rate, p.cost) for p in site.periods}


def only_site(reply: pb.ComputeCostsResponse) -> pb.SiteCost:
    (customer,) = reply.customers
    (site,) = customer.sites
    return site


def jhb(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=JOHANNESBURG)


def test_peak_off_peak_week_is_billed_as_hand_computed(db, stubs, admin_token, new_customer, cost_partitions):
    acme = new_customer("ACME")
    cost_partitions.cover(datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 4, 1, tzinfo=UTC))

    def seed(session):
        add_tariff(session, acme.id, PEAK_OFF_PEAK)
        add_site(session, acme.id, 1, timezone="Africa/Johannesburg", tariff_id=7, devices=[10], name="Depot")
        add_readings(
            session,
            acme.id,
            10,
            [
                (jhb(2026, 3, 2, 17, 0), 1.5),  # Monday 17:00 exactly: peak starts
                (jhb(2026, 3, 2, 19, 45), 1.25),  # Monday 19:45: still peak
                (jhb(2026, 3, 2, 20, 0), 2.0),  # Monday 20:00: peak has ended -> default
                (jhb(2026, 3, 3, 12, 0), 3.0),  # Tuesday noon: no period -> default
                (jhb(2026, 3, 7, 23, 59), 0.75),  # Saturday 23:59: off-peak until the end of day
                (jhb(2026, 3, 8, 8, 0), 1.0),  # Sunday morning: off-peak
                (jhb(2026, 3, 9, 0, 0), 100.0),  # the range's end: excluded
                (jhb(2026, 3, 1, 23, 45), 100.0),  # before the range: excluded
            ],
        )
        add_readings(session, acme.id, 10, [(jhb(2026, 3, 3, 12, 0), 9.0)], metric="power_w")

    db.transaction(seed)
    reply = compute(stubs, admin_token, jhb(2026, 3, 2), jhb(2026, 3, 9))

    site = only_site(reply)
    assert (site.site_id, site.site_name, site.tariff_id, site.currency) == (1, "Depot", 7, "ZAR")
    assert [p.period_id for p in site.periods] == [1, 2, 0]  # by id, default last
    assert lines(site) == {
        "Peak": ("2.750000", "4.50", "12.38"),  # 12.375 rounds half-up
        "Off-Peak": ("1.750000", "1.25", "2.19"),  # 2.1875
        "default": ("5.000000", "2.00", "10.00"),
    }
    assert site.energy_kwh == "9.500000"
    assert site.energy_cost == "24.57"
    assert site.fixed_charge == "70.00"  # 7 of March's 31 days of 310.00
    assert site.vat == "14.19"  # 15% of 94.57 = 14.1855
    assert site.total == "108.76"
    assert site.unpriced_kwh == "0.000000"
    assert [(t.currency, t.total) for t in reply.customers[0].totals] == [("ZAR", "108.76")]


def test_overnight_period_wraps_on_the_listed_day_itself(
    db, stubs, admin_token, new_customer, cost_partitions
):
    acme = new_customer("ACME")
    cost_partitions.cover(datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 4, 1, tzinfo=UTC))
    night = TariffSpec(id=1, periods=(PeriodSpec(1, "Night", 0b0000001, "22:00", "06:00", "1.00"),))

    def seed(session):
        add_tariff(session, acme.id, night)
        add_site(session, acme.id, 1, tariff_id=1, devices=[10])
        add_readings(
            session,
            acme.id,
            10,
            [
                (datetime(2026, 3, 2, 23, 0, tzinfo=UTC), 1.0),  # Monday 23:00: night
                (datetime(2026, 3, 2, 5, 59, 59, tzinfo=UTC), 2.0),  # Monday 05:59:59: night
                (datetime(2026, 3, 2, 6, 0, tzinfo=UTC), 4.0),  # Monday 06:00: default
                (datetime(2026, 3, 3, 2, 0, tzinfo=UTC), 8.0),  # Tuesday 02:00: Tuesday is not listed
                (datetime(2026, 3, 1, 23, 0, tzinfo=UTC), 16.0),  # Sunday 23:00: default
            ],
        )

    db.transaction(seed)
    site = only_site(compute(stubs, admin_token, datetime(2026, 3, 1), datetime(2026, 3, 8)))
    assert lines(site) == {"Night": ("3.000000", "1.00", "3.00"), "default": ("28.000000", "2.00", "56.00")}


def test_overlapping_periods_bill_the_lowest_id(db, stubs, admin_token, new_customer, cost_partitions):
    acme = new_customer("ACME")
    cost_partitions.cover(datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 4, 1, tzinfo=UTC))
    overlapping = TariffSpec(
        id=1,
        periods=(
            PeriodSpec(5, "Morning", 0b1111111, "08:00", "12:00", "2.50"),
            PeriodSpec(3, "Midday", 0b1111111, "10:00", "14:00", "3.00"),
        ),
    )

    def seed(session):
        add_tariff(session, acme.id, overlapping)
        add_site(session, acme.id, 1, tariff_id=1, devices=[10])
        add_readings(
            session,
            acme.id,
            10,
            [
                (datetime(2026, 3, 4, 9, 0, tzinfo=UTC), 1.0),  # only Morning
                (datetime(2026, 3, 4, 11, 0, tzinfo=UTC), 2.0),  # both: Midday has the lower id
                (datetime(2026, 3, 4, 13, 0, tzinfo=UTC), 4.0),  # only Midday
            ],
        )

    db.transaction(seed)
    site = only_site(compute(stubs, admin_token, datetime(2026, 3, 1), datetime(2026, 3, 8)))
    assert [p.period_id for p in site.periods] == [3, 5]
    assert lines(site) == {"Midday": ("6.000000", "3.00", "18.00"), "Morning": ("1.000000", "2.50", "2.50")}


def test_amsterdam_spring_forward_uses_the_local_wall_clock(
    db, stubs, admin_token, new_customer, cost_partitions
):
    """2026-03-29 (a Sunday) 02:00 CET jumps to 03:00 CEST: 01:00Z is 03:00 local, not 02:00."""
    acme = new_customer("ACME")
    cost_partitions.cover(datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 5, 1, tzinfo=UTC))
    split = TariffSpec(
        id=1,
        periods=(
            PeriodSpec(1, "Early", 0b1000000, "00:00", "03:00", "1.00"),
            PeriodSpec(2, "Sunday", 0b1000000, "03:00", "23:59", "3.00"),
        ),
        fixed_charge="743.00",  # March in Amsterdam lasts 743 hours
        currency="EUR",
    )

    def seed(session):
        add_tariff(session, acme.id, split)
        add_site(session, acme.id, 1, timezone="Europe/Amsterdam", tariff_id=1, devices=[10])
        add_readings(
            session,
            acme.id,
            10,
            [
                (datetime(2026, 3, 28, 23, 0, tzinfo=UTC), 1.0),  # Sunday 00:00 CET: Early
                (datetime(2026, 3, 29, 0, 45, tzinfo=UTC), 2.0),  # 01:45 CET: Early
                (datetime(2026, 3, 29, 1, 0, tzinfo=UTC), 4.0),  # 03:00 CEST: Sunday
                (datetime(2026, 3, 29, 21, 59, tzinfo=UTC), 8.0),  # 23:59 CEST: Sunday till the end of day
                (datetime(2026, 3, 29, 22, 0, tzinfo=UTC), 16.0),  # Monday 00:00 CEST: default
            ],
        )

    db.transaction(seed)
    start = datetime(2026, 3, 29, tzinfo=AMSTERDAM)  # 71 elapsed hours before April starts
    site = only_site(compute(stubs, admin_token, start, datetime(2026, 4, 1, tzinfo=AMSTERDAM)))
    assert lines(site) == {
        "Early": ("3.000000", "1.00", "3.00"),
        "Sunday": ("12.000000", "3.00", "36.00"),
        "default": ("16.000000", "2.00", "32.00"),
    }
    assert site.fixed_charge == "71.00"  # 71 of 743 hours, not 72 of 744 wall-clock hours

    whole_march = only_site(
        compute(
            stubs, admin_token, datetime(2026, 3, 1, tzinfo=AMSTERDAM), datetime(2026, 4, 1, tzinfo=AMSTERDAM)
        )
    )
    assert whole_march.fixed_charge == "743.00"


def test_effective_window_ending_mid_range_leaves_the_rest_unpriced(
    db, stubs, admin_token, new_customer, cost_partitions
):
    acme = new_customer("ACME")
    cost_partitions.cover(datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 4, 1, tzinfo=UTC))
    ending = TariffSpec(id=1, fixed_charge="310.00", effective_to=datetime(2026, 3, 16, tzinfo=UTC))

    def seed(session):
        add_tariff(session, acme.id, ending)
        add_site(session, acme.id, 1, tariff_id=1, devices=[10])
        add_readings(
            session,
            acme.id,
            10,
            [
                (datetime(2026, 3, 15, 23, 59, tzinfo=UTC), 1.0),  # inside the window
                (datetime(2026, 3, 16, 0, 0, tzinfo=UTC), 2.0),  # effective_to is exclusive
                (datetime(2026, 3, 20, tzinfo=UTC), 4.0),
            ],
        )

    db.transaction(seed)
    site = only_site(compute(stubs, admin_token, datetime(2026, 3, 1), datetime(2026, 4, 1)))
    assert lines(site) == {"default": ("1.000000", "2.00", "2.00")}
    assert site.unpriced_kwh == "6.000000"
    assert site.fixed_charge == "150.00"  # 15 of 31 days inside the window
    assert site.total == "152.00"


def test_sites_without_a_billable_tariff_report_unpriced_kwh(
    db, stubs, admin_token, new_customer, cost_partitions
):
    acme = new_customer("ACME")
    cost_partitions.cover(datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 4, 1, tzinfo=UTC))
    inactive = TariffSpec(id=1, is_active=False, fixed_charge="100", currency="USD")
    when = datetime(2026, 3, 2, 12, tzinfo=UTC)

    def seed(session):
        add_tariff(session, acme.id, inactive)
        add_site(session, acme.id, 1, devices=[10])  # no tariff at all
        add_site(session, acme.id, 2, tariff_id=99, devices=[20])  # names a tariff never pushed
        add_site(session, acme.id, 3, tariff_id=1, devices=[30])  # inactive tariff
        add_site(session, acme.id, 4, tariff_id=None)  # no readings either
        for device, value in ((10, 1.5), (20, 2.25), (30, 3.125), (77, 0.5)):  # 77: an unknown device
            add_readings(session, acme.id, device, [(when, value)])

    db.transaction(seed)
    (customer,) = compute(stubs, admin_token, datetime(2026, 3, 1), datetime(2026, 4, 1)).customers
    by_id = {site.site_id: site for site in customer.sites}
    assert [site.site_id for site in customer.sites] == [0, 1, 2, 3, 4]
    summary = {
        site_id: (
            site.HasField("tariff_id") and site.tariff_id,
            site.currency,
            site.unpriced_kwh,
            site.fixed_charge,
            site.total,
            len(site.periods),
        )
        for site_id, site in by_id.items()
    }
    assert summary == {
        0: (False, "", "0.500000", "0.00", "0.00", 0),
        1: (False, "", "1.500000", "0.00", "0.00", 0),
        2: (99, "", "2.250000", "0.00", "0.00", 0),
        3: (1, "USD", "3.125000", "0.00", "0.00", 0),
        4: (False, "", "0.000000", "0.00", "0.00", 0),
    }
    assert by_id[0].site_name == "(readings of unknown devices)"
    assert [(t.currency, t.total) for t in customer.totals] == [("USD", "0.00")]


# Each reading is billed from the double's shortest decimal form, rounded half-up to 6 places.
KWH_CONVERSIONS = [
    (1.5, "1.500000"),
    (0.1234565, "0.123457"),  # binary 0.12345649999…: rounded from its shortest decimal form
    (5e-07, "0.000001"),
    (4e-07, "0.000000"),
    (12.34567849999999, "12.345678"),  # 16 digits: a 15-digit conversion would say 12.345679
    (-0.0000015, "-0.000002"),  # half-up rounds ties away from zero
    (1234567890.1234567, "1234567890.123457"),
]


def test_each_reading_is_converted_once_to_6_places(db, stubs, admin_token, new_customer, cost_partitions):
    acme = new_customer("ACME")
    cost_partitions.cover(datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 4, 1, tzinfo=UTC))
    when = datetime(2026, 3, 2, 12, tzinfo=UTC)

    def seed(session):
        for site_id, (value, _) in enumerate(KWH_CONVERSIONS, start=1):  # one reading per site
            add_site(session, acme.id, site_id, devices=[site_id])
            add_readings(session, acme.id, site_id, [(when, value)])

    db.transaction(seed)
    (customer,) = compute(stubs, admin_token, datetime(2026, 3, 1), datetime(2026, 4, 1)).customers
    assert [site.unpriced_kwh for site in customer.sites] == [expected for _, expected in KWH_CONVERSIONS]


def test_fixed_charge_is_pro_rated_across_a_month_boundary(
    db, stubs, admin_token, new_customer, cost_partitions
):
    acme = new_customer("ACME")
    tariff = TariffSpec(id=1, fixed_charge="124.00", vat_percent="15")

    def seed(session):
        add_tariff(session, acme.id, tariff)
        add_site(session, acme.id, 1, tariff_id=1)

    db.transaction(seed)
    site = only_site(compute(stubs, admin_token, datetime(2026, 1, 25), datetime(2026, 2, 8)))
    assert site.fixed_charge == "59.00"  # 124 * 7/31 (January) + 124 * 7/28 (February) = 28 + 31
    assert site.energy_cost == "0.00"
    assert site.vat == "8.85"
    assert site.total == "67.85"
    assert not site.periods


def test_vat_is_rounded_half_up_on_energy_plus_fixed(db, stubs, admin_token, new_customer, cost_partitions):
    acme = new_customer("ACME")
    cost_partitions.cover(datetime(2026, 2, 1, tzinfo=UTC), datetime(2026, 3, 1, tzinfo=UTC))
    tariff = TariffSpec(id=1, default_rate="0.648", fixed_charge="28.00", vat_percent="12.5")

    def seed(session):
        add_tariff(session, acme.id, tariff)
        add_site(session, acme.id, 1, tariff_id=1, devices=[10])
        # Each value is rounded half-up from its shortest decimal form (0.1234565 is stored in
        # binary as 0.12345649999…, 5e-07 as 4.99999…e-07): 0.123457 + 0.000001 kWh.
        add_readings(
            session,
            acme.id,
            10,
            [(datetime(2026, 2, 3, tzinfo=UTC), 0.1234565), (datetime(2026, 2, 4, tzinfo=UTC), 0.0000005)],
        )

    db.transaction(seed)
    site = only_site(compute(stubs, admin_token, datetime(2026, 2, 1), datetime(2026, 2, 8)))
    assert lines(site) == {"default": ("0.123458", "0.648", "0.08")}  # 0.080000784
    assert site.fixed_charge == "7.00"  # a quarter of February
    assert site.vat == "0.89"  # 12.5% of 7.08 = 0.885: half-up, not half-even
    assert site.total == "7.97"


def test_two_customers_in_different_currencies(db, stubs, admin_token, new_customer, cost_partitions):
    acme, beta = new_customer("ACME"), new_customer("BETA")
    cost_partitions.cover(datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 4, 1, tzinfo=UTC))
    when = datetime(2026, 3, 3, 12, tzinfo=UTC)

    def seed(session):
        add_tariff(session, acme.id, TariffSpec(id=1, default_rate="2.00", currency="ZAR"))
        add_tariff(session, acme.id, TariffSpec(id=2, default_rate="0.50", currency="USD"))
        add_site(session, acme.id, 1, tariff_id=1, devices=[1])
        add_site(session, acme.id, 2, tariff_id=2, devices=[2])
        add_site(session, acme.id, 3, tariff_id=1, devices=[3])
        # BETA uses the same local ids: its rows must never mix with ACME's.
        add_tariff(session, beta.id, TariffSpec(id=1, default_rate="0.30", currency="EUR"))
        add_site(session, beta.id, 1, tariff_id=1, devices=[1])
        for customer, device, value in ((acme, 1, 10.0), (acme, 2, 4.0), (acme, 3, 1.0), (beta, 1, 7.0)):
            add_readings(session, customer.id, device, [(when, value)])

    db.transaction(seed)
    start, end = datetime(2026, 3, 1), datetime(2026, 3, 8)
    reply = compute(stubs, admin_token, start, end)
    assert [c.code for c in reply.customers] == ["ACME", "BETA"]
    acme_bill, beta_bill = reply.customers
    assert [(s.site_id, s.currency, s.total) for s in acme_bill.sites] == [
        (1, "ZAR", "20.00"),
        (2, "USD", "2.00"),
        (3, "ZAR", "2.00"),
    ]
    assert [(t.currency, t.total) for t in acme_bill.totals] == [("USD", "2.00"), ("ZAR", "22.00")]
    assert [(t.currency, t.total) for t in beta_bill.totals] == [("EUR", "2.10")]

    only_beta = compute(stubs, admin_token, start, end, codes=["BETA", "BETA"])  # duplicates collapse
    assert [c.code for c in only_beta.customers] == ["BETA"]
    assert only_beta.customers[0] == beta_bill


@pytest.mark.parametrize("span_days", [30, 60])
def test_readings_are_grouped_not_returned(db, stubs, admin_token, new_customer, cost_partitions, span_days):
    """Every 15-minute reading of the range is counted once, whatever the range's length."""
    acme = new_customer("ACME")
    start = datetime(2026, 3, 1, tzinfo=UTC)
    end = start + timedelta(days=span_days)
    cost_partitions.cover(start, end)
    readings = [(start + timedelta(minutes=15 * i), 0.25) for i in range(span_days * 96)]

    def seed(session):
        add_tariff(session, acme.id, PEAK_OFF_PEAK)
        add_site(session, acme.id, 1, timezone="Africa/Johannesburg", tariff_id=7, devices=[10])
        add_readings(session, acme.id, 10, readings)

    db.transaction(seed)
    site = only_site(compute(stubs, admin_token, start, end))
    assert site.energy_kwh == f"{span_days * 96 * 0.25:.6f}"
