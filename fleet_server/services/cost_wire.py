"""ComputeCosts wire ⇄ domain: the request as a `CostQuery`, a `CostReport` as decimal strings."""

from __future__ import annotations

from fleet.v1 import query_service_pb2 as pb

from fleet_server.domain.costs import CostQuery, CostReport, CustomerCost, SiteCost
from fleet_server.domain.tou import PeriodLine
from fleet_server.rpc.wellknown import decimal_text, optional_datetime


def to_query(request: pb.ComputeCostsRequest) -> CostQuery:
    """Unset timestamps stay None, so the domain can say which one is missing."""
    return CostQuery(
        codes=tuple(request.codes),
        start=optional_datetime(request, "start"),
        end=optional_datetime(request, "end"),
    )


def _period(line: PeriodLine) -> pb.PeriodCost:
    return pb.PeriodCost(
        period_id=line.period_id,
        period_name=line.period_name,
        kwh=decimal_text(line.kwh),
        rate=decimal_text(line.rate),
        cost=decimal_text(line.cost),
    )


def _site(site: SiteCost) -> pb.SiteCost:
    message = pb.SiteCost(
        site_id=site.site_id,
        site_name=site.site_name,
        currency=site.currency,
        periods=[_period(line) for line in site.periods],
        energy_kwh=decimal_text(site.energy_kwh),
        energy_cost=decimal_text(site.energy_cost),
        fixed_charge=decimal_text(site.fixed_charge),
        vat=decimal_text(site.vat),
        total=decimal_text(site.total),
        unpriced_kwh=decimal_text(site.unpriced_kwh),
        tariff_name=site.tariff_name,
    )
    if site.tariff_id is not None:
        message.tariff_id = site.tariff_id
    return message


def _customer(customer: CustomerCost) -> pb.CustomerCost:
    return pb.CustomerCost(
        code=customer.code,
        sites=[_site(site) for site in customer.sites],
        totals=[
            pb.CurrencyTotal(currency=currency, total=decimal_text(total))
            for currency, total in customer.totals
        ],
    )


def to_response(report: CostReport) -> pb.ComputeCostsResponse:
    return pb.ComputeCostsResponse(customers=[_customer(customer) for customer in report.customers])
