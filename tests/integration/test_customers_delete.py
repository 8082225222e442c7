"""DeleteCustomer: GDPR erasure of the customer and every row of its data, counted per table."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import grpc
import pytest
from fleet.v1 import admin_service_pb2 as pb
from fleet.v1 import ingest_service_pb2 as ingest_pb
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from fleet_server.db.base import Base
from fleet_server.db.models import (
    CompressedMonth,
    Customer,
    Device,
    HourlyRollup,
    Measurement,
    Municipality,
    Site,
    SyncStatus,
    Tariff,
    TariffPeriod,
)
from tests.support.clients import bearer

# A one-day partition far from any date other tests push, dropped again after each test.
_DAY = datetime(2001, 2, 3, tzinfo=UTC)
_PARTITION = "fleet_partitions.test_customers_delete_20010203"


@pytest.fixture
def measurement_partition(engine):
    with engine.begin() as conn:
        conn.execute(
            text(
                f"CREATE TABLE IF NOT EXISTS {_PARTITION} PARTITION OF fleet.measurements "
                "FOR VALUES FROM ('2001-02-03 00:00+00') TO ('2001-02-04 00:00+00')"
            )
        )
    yield
    with engine.begin() as conn:
        conn.execute(text(f"DROP TABLE IF EXISTS {_PARTITION}"))


def _seed(engine, customer_id: int, scale: int) -> None:
    """`scale` rows of nearly everything for one customer, one row in every table at least."""
    with Session(engine) as session, session.begin():
        session.add(Municipality(customer_id=customer_id, id=1, name="Metro", region="GP"))
        session.add(Site(customer_id=customer_id, id=1, name="HQ", address="1 Main", timezone="UTC"))
        session.flush()
        session.add(
            Tariff(
                customer_id=customer_id,
                id=1,
                municipality_id=1,
                name="TOU",
                is_active=True,
                effective_from=_DAY,
                default_rate=Decimal("1.5"),
                fixed_charge=Decimal("100"),
                vat_percent=Decimal("15"),
                currency="ZAR",
            )
        )
        for i in range(1, scale + 1):
            session.add(
                Device(
                    customer_id=customer_id,
                    id=i,
                    site_id=1,
                    name=f"m{i}",
                    serial_number=f"s{i}",
                    kind="meter",
                )
            )
        session.flush()
        for i in range(1, scale + 1):
            session.add(
                TariffPeriod(
                    customer_id=customer_id,
                    tariff_id=1,
                    id=i,
                    name=f"p{i}",
                    days_of_week=127,
                    start_minute=i,
                    end_minute=i + 60,
                    rate=Decimal("2"),
                )
            )
            for hour in range(scale):
                at = _DAY + timedelta(hours=hour)
                session.add(
                    Measurement(
                        customer_id=customer_id,
                        device_id=i,
                        metric="energy_kwh",
                        time=at,
                        value=1.0,
                        received_at=at,
                    )
                )
                session.add(
                    HourlyRollup(
                        customer_id=customer_id,
                        device_id=i,
                        metric="energy_kwh",
                        bucket=at,
                        count=1,
                        sum=1.0,
                        min=1.0,
                        max=1.0,
                    )
                )
            session.add(  # the device's compressed January (its payload is not read here)
                CompressedMonth(
                    customer_id=customer_id,
                    device_id=i,
                    metric="energy_kwh",
                    month=date(2001, 1, 1),
                    through_day=date(2001, 1, 31),
                    readings=1,
                    first_time=_DAY - timedelta(days=20),
                    last_time=_DAY - timedelta(days=20),
                    payload=b"unit",
                )
            )
        session.add(SyncStatus(customer_id=customer_id, resource="sites", last_push_at=_DAY, last_received=1))


def _rows_of(engine, customer_id: int) -> dict[str, int]:
    counts = {}
    with engine.connect() as conn:
        for table in Base.metadata.sorted_tables:
            if "customer_id" in table.c:
                counts[table.name] = conn.scalar(
                    select(func.count()).select_from(table).where(table.c.customer_id == customer_id)
                )
        counts["customers"] = conn.scalar(select(func.count()).where(Customer.id == customer_id))
    return counts


def test_delete_erases_every_row_of_the_customer_and_reports_counts_per_table(
    stubs, admin_token, engine, new_customer, measurement_partition
):
    gone = new_customer("GONE")
    kept = new_customer("KEPT")
    _seed(engine, gone.id, scale=3)
    _seed(engine, kept.id, scale=2)
    kept_before = _rows_of(engine, kept.id)

    reply = stubs.admin.DeleteCustomer(pb.DeleteCustomerRequest(code="GONE"), metadata=bearer(admin_token))

    assert dict(reply.deleted_rows) == {
        "measurements": 9,
        "measurement_rollups_hourly": 9,
        "measurements_compressed": 3,
        "tariff_periods": 3,
        "tariffs": 1,
        "devices": 3,
        "sites": 1,
        "municipalities": 1,
        "sync_status": 1,
        "customers": 1,
    }
    assert set(_rows_of(engine, gone.id).values()) == {0}
    assert _rows_of(engine, kept.id) == kept_before


def test_delete_covers_every_table_that_holds_customer_rows(stubs, admin_token, new_customer):
    """A table added to the schema later is erased too: the counts name every customer table."""
    new_customer("GONE")
    reply = stubs.admin.DeleteCustomer(pb.DeleteCustomerRequest(code="GONE"), metadata=bearer(admin_token))
    customer_tables = {t.name for t in Base.metadata.sorted_tables if "customer_id" in t.c} | {"customers"}
    assert set(reply.deleted_rows) == customer_tables
    assert reply.deleted_rows["customers"] == 1


def test_a_deleted_customer_is_gone_for_auth_and_admin_at_once(stubs, admin_token, new_customer):
    customer = new_customer("GONE")
    stubs.admin.DeleteCustomer(pb.DeleteCustomerRequest(code="GONE"), metadata=bearer(admin_token))

    with pytest.raises(grpc.RpcError) as err:
        list(stubs.ingest.PushMeasurements(iter(()), metadata=bearer(customer.token), timeout=10))
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(grpc.RpcError) as err:
        stubs.ingest.PushSites(
            iter([ingest_pb.PushSitesRequest()]), metadata=bearer(customer.token), timeout=10
        )
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    for call, request in (
        (stubs.admin.GetCustomer, pb.GetCustomerRequest(code="GONE")),
        (stubs.admin.DeleteCustomer, pb.DeleteCustomerRequest(code="GONE")),
    ):
        with pytest.raises(grpc.RpcError) as err:
            call(request, metadata=bearer(admin_token), timeout=10)
        assert err.value.code() == grpc.StatusCode.NOT_FOUND


def test_the_code_of_a_deleted_customer_can_be_registered_again_with_a_new_token(
    stubs, admin_token, new_customer
):
    old = new_customer("REUSE")
    meta = bearer(admin_token)
    stubs.admin.DeleteCustomer(pb.DeleteCustomerRequest(code="REUSE"), metadata=meta)
    reply = stubs.admin.CreateCustomer(pb.CreateCustomerRequest(code="REUSE", name="Again"), metadata=meta)
    assert reply.customer.id != old.id
    with pytest.raises(grpc.RpcError) as err:
        list(stubs.ingest.PushMeasurements(iter(()), metadata=bearer(old.token), timeout=10))
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
