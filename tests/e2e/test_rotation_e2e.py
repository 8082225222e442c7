"""Token rotation against the real `fleet-server` process: the grace window as a portal lives it."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from fleet.v1 import admin_service_pb2 as pb
from fleet.v1 import ingest_service_pb2 as ingest_pb
from fleet.v1 import resources_pb2

from fleet_server.db.session import Database
from tests.support.clients import Stubs, bearer
from tests.support.process import ServerProcess

pytestmark = pytest.mark.e2e

_SITES = ingest_pb.PushSitesRequest(
    sites=[resources_pb2.Site(id=1, name="Head office", address="1 Main Rd", timezone="Africa/Johannesburg")]
)


def push_sites(stubs: Stubs, token: str) -> grpc.StatusCode:
    """Push a one-site snapshot as a portal would; the call's status."""
    try:
        reply = stubs.ingest.PushSites(iter([_SITES]), metadata=bearer(token), timeout=15)
    except grpc.RpcError as err:
        return err.code()
    assert reply.summary.received == 1
    return grpc.StatusCode.OK


def test_rotate_twice_with_a_grace_window(
    database_url: str, db: Database, admin_token: str, tmp_path: Path
) -> None:
    with ServerProcess(database_url, data_dir=tmp_path) as server:
        stubs = Stubs.connect(server.target)
        admin = bearer(admin_token)
        try:
            token1 = stubs.admin.CreateCustomer(
                pb.CreateCustomerRequest(code="ACME", name="Acme"), metadata=admin, timeout=15
            ).token
            assert push_sites(stubs, token1) == grpc.StatusCode.OK

            rotated = stubs.admin.RotateCustomerToken(
                pb.RotateCustomerTokenRequest(code="ACME"), metadata=admin, timeout=15
            )
            token2 = rotated.token
            assert rotated.customer.HasField("previous_token_expires_at")
            assert push_sites(stubs, token1) == grpc.StatusCode.OK
            assert push_sites(stubs, token2) == grpc.StatusCode.OK

            token3 = stubs.admin.RotateCustomerToken(
                pb.RotateCustomerTokenRequest(code="ACME"), metadata=admin, timeout=15
            ).token
            assert push_sites(stubs, token1) == grpc.StatusCode.UNAUTHENTICATED
            assert push_sites(stubs, token2) == grpc.StatusCode.OK
            assert push_sites(stubs, token3) == grpc.StatusCode.OK
        finally:
            stubs.close()
        server.terminate()
    access = [
        line
        for line in server.output.splitlines()
        if "rpc method=/fleet.v1.FleetIngestService/PushSites" in line
    ]
    assert sum("customer=ACME" in line and "status=OK" in line for line in access) == 5
    assert sum("status=UNAUTHENTICATED" in line for line in access) == 1
    # token1 after the first rotation, token2 after the second: the portals still to switch.
    assert sum(line.endswith(" token=previous") for line in access) == 2
    for token in (token1, token2, token3, admin_token):
        assert token not in server.output
