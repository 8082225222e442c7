"""fleetctl's list commands stream: each page is printed before the next is asked for."""

from __future__ import annotations

import argparse
import io
import json
import os
from contextlib import redirect_stdout
from typing import Any

import pytest
from fleet.v1 import query_service_pb2 as pb
from fleet.v1 import resources_pb2 as res

from fleet_server.fleetctl import connection as fleetctl_connection
from fleet_server.fleetctl import listings
from fleet_server.fleetctl.main import main as fleetctl_main


class _Query:
    """A FleetQueryService stand-in: three pages of devices; each call sees what was printed so far."""

    def __init__(self, out: io.StringIO) -> None:
        self.out = out
        self.printed_before: list[str] = []
        self.requests: list[pb.ListDevicesRequest] = []

    def ListSites(self, request: pb.ListSitesRequest, **_: Any) -> pb.ListSitesResponse:
        """One site, read whole before the first device is printed (its name labels the rows)."""
        return pb.ListSitesResponse(sites=[res.Site(id=1, name="Head office")], total_size=1)

    def ListDevices(self, request: pb.ListDevicesRequest, **_: Any) -> pb.ListDevicesResponse:
        self.printed_before.append(self.out.getvalue())
        self.requests.append(request)
        page = len(self.requests)
        devices = [res.Device(id=page * 10 + i, site_id=1, name=f"Meter {page}{i}") for i in (1, 2)]
        return pb.ListDevicesResponse(
            devices=devices, next_page_token=f"token-{page}" if page < 3 else "", total_size=6
        )


def _listed(json_output: bool) -> tuple[_Query, str]:
    out = io.StringIO()
    query = _Query(out)
    connection: Any = argparse.Namespace(query=query, metadata=(), timeout=1.0)
    args = argparse.Namespace(code="ACME", json=json_output)
    with redirect_stdout(out):
        assert listings._run("devices")(args, connection) == 0
    return query, out.getvalue()


@pytest.mark.parametrize("json_output", [False, True])
def test_each_page_is_printed_before_the_next_is_requested(json_output):
    query, _ = _listed(json_output)
    assert [r.page_token for r in query.requests] == ["", "token-1", "token-2"]
    assert {r.page_size for r in query.requests} == {listings.PAGE_SIZE}
    assert {r.code for r in query.requests} == {"ACME"}
    assert "Meter" not in query.printed_before[0]
    assert "Meter 12" in query.printed_before[1]  # page 1 is out before page 2 is fetched
    assert "Meter 22" in query.printed_before[2]
    assert "Meter 31" not in query.printed_before[2]


def test_the_table_keeps_the_first_pages_columns():
    _, out = _listed(False)
    lines = out.splitlines()
    assert lines[0].split() == ["ID", "Site", "Name", "Serial", "Kind"]
    assert [line.split()[0] for line in lines[2:]] == ["11", "12", "21", "22", "31", "32"]
    assert len({line.index("Meter") for line in lines[2:]}) == 1
    assert all("Head office (id 1)" in line for line in lines[2:])  # the site by name, not a bare id


def test_json_is_one_document():
    _, out = _listed(True)
    assert [d["id"] for d in json.loads(out)["devices"]] == [11, 12, 21, 22, 31, 32]


class _ClosedPipe(io.StringIO):
    """stdout after the reader went away (`fleetctl customers devices ACME | head`)."""

    def write(self, text: str) -> int:
        raise BrokenPipeError

    def fileno(self) -> int:
        return 1


def test_a_closed_pipe_ends_quietly(monkeypatch):
    query = _Query(io.StringIO())
    connection: Any = argparse.Namespace(query=query, metadata=(), timeout=1.0, close=lambda: None)
    monkeypatch.setattr(fleetctl_connection, "connect", lambda args: connection)
    redirected: list[tuple[int, int]] = []
    with monkeypatch.context() as patched, redirect_stdout(_ClosedPipe()):
        patched.setattr(os, "open", lambda path, flags: 99)
        patched.setattr(os, "dup2", lambda fd, to: redirected.append((fd, to)))
        status = fleetctl_main(["--admin-token", "x", "customers", "devices", "ACME"])
    assert status == 0
    assert redirected == [(99, 1)]
    assert len(query.requests) == 1  # no page is fetched for a reader that is gone
