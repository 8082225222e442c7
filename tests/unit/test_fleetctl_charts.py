"""The terminal pictures: sparklines, bars, folding a long series into the width, units from names."""

from __future__ import annotations

from datetime import UTC, datetime

from fleet.v1 import query_service_pb2 as pb

from fleet_server.fleetctl.charts import bar, fold, sparkline
from fleet_server.fleetctl.costs import render_costs
from fleet_server.fleetctl.measurements import unit_of


def test_a_sparkline_spans_the_scale_and_leaves_gaps_blank() -> None:
    assert sparkline([0.0, 1.0, None, 7.0], 0.0, 7.0) == "▁▂ █"
    assert sparkline([5.0, 5.0], 5.0, 5.0) == "▁▁"  # a flat series is the floor, not an error


def test_a_bar_is_proportional_in_eighths_of_a_cell() -> None:
    assert bar(10, 10, 4) == "████"
    assert bar(5, 10, 4) == "██"
    assert bar(1, 10, 4) == "▍"  # 3.2 eighths → 3
    assert bar(0, 10, 4) == ""
    assert bar(0.001, 10, 4) == "▏"  # anything above zero shows


def test_folding_sums_what_adds_up_and_averages_what_does_not() -> None:
    values: list[float | None] = [1.0, 3.0, None, None, 2.0]
    assert fold(values, 3, additive=True) == ([4.0, None, 2.0], 2)
    assert fold(values, 3, additive=False) == ([2.0, None, 2.0], 2)
    assert fold(values, 10, additive=True) == (values, 1)


def test_units_come_from_the_metric_names_suffix() -> None:
    assert unit_of("energy_kwh") == ("kWh", True)
    assert unit_of("power_w") == ("W", False)
    assert unit_of("temperature_c") == ("°C", False)
    assert unit_of("status") == ("", False)


def test_costs_chart_draws_a_bar_per_period_line() -> None:
    site = pb.SiteCost(
        site_id=1,
        site_name="Depot",
        tariff_id=7,
        tariff_name="TOU",
        currency="ZAR",
        periods=[
            pb.PeriodCost(period_id=1, period_name="Peak", kwh="2", rate="4.50", cost="9.00"),
            pb.PeriodCost(period_id=0, period_name="default", kwh="1", rate="2.25", cost="2.25"),
        ],
    )
    reply = pb.ComputeCostsResponse(customers=[pb.CustomerCost(code="ACME", sites=[site])])
    start, end = datetime(2026, 3, 2, tzinfo=UTC), datetime(2026, 3, 9, tzinfo=UTC)
    lines = render_costs(reply, start, end, chart=True).splitlines()
    chart = lines[lines.index("Energy cost per period") + 1 :]
    assert chart[0].startswith("Depot  Peak     " + "█" * 30)
    assert chart[0].endswith(" 9.00 ZAR")
    assert chart[1].startswith("       default  " + "███████▌" + " ")
    assert "TOU (id 7)" in render_costs(reply, start, end)
    assert "Energy cost per period" not in render_costs(reply, start, end)
