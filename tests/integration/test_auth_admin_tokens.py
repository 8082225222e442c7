"""`fleet-server admin-token create | list | revoke` and what the server makes of a revoked token."""

from __future__ import annotations

import hashlib
import os
import subprocess
from collections.abc import Callable
from dataclasses import dataclass

import grpc
import pytest
from fleet.v1 import admin_service_pb2 as pb
from sqlalchemy import Engine, select

from fleet_server import cli as server_cli
from fleet_server.db.models import AdminToken
from tests.support.clients import Stubs, bearer
from tests.support.process import cli


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def admin_token_cli(
    database_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Callable[..., Result]:
    """`fleet-server admin-token …` in this process (a child process costs seconds of imports)."""
    monkeypatch.setenv("FLEET_DATABASE_URL", database_url)
    monkeypatch.setattr(server_cli, "configure_logging", lambda level: None)  # keep pytest's handlers

    def run(*args: str) -> Result:
        capsys.readouterr()
        code = server_cli.main(["admin-token", *args])
        out, err = capsys.readouterr()
        return Result(code, out, err)

    return run


def _hashes(engine: Engine) -> dict[str, tuple[str, object]]:
    with engine.connect() as conn:
        rows = conn.execute(select(AdminToken.name, AdminToken.token_hash, AdminToken.revoked_at))
        return {row.name: (row.token_hash, row.revoked_at) for row in rows}


def test_the_installed_command_mints_a_token(database_url: str, engine: Engine, db: object) -> None:
    env = {**os.environ, "FLEET_DATABASE_URL": database_url, "FLEET_LOG_LEVEL": "WARNING"}
    created = subprocess.run(
        [cli("fleet-server"), "admin-token", "create", "ci"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert created.returncode == 0, created.stderr
    assert created.stdout.strip().startswith("fleetadm_")
    assert created.stdout.count("\n") == 1  # only the token on stdout, for `$(…)`
    assert "shown only this once" in created.stderr
    assert set(_hashes(engine)) == {"ci"}


def test_mint_use_list_and_revoke_an_admin_token(
    admin_token_cli: Callable[..., Result], engine: Engine, stubs: Stubs
) -> None:
    created = admin_token_cli("create", "ops-alice")
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip()
    assert token.startswith("fleetadm_")
    assert created.stdout.count("\n") == 1  # only the token on stdout, for `$(…)`
    assert "shown only this once" in created.stderr
    assert _hashes(engine)["ops-alice"] == (hashlib.sha256(token.encode()).hexdigest(), None)

    reply = stubs.admin.ListCustomers(pb.ListCustomersRequest(), metadata=bearer(token), timeout=10)
    assert list(reply.customers) == []

    listed = admin_token_cli("list")
    assert listed.returncode == 0, listed.stderr
    header, line = listed.stdout.splitlines()
    assert header.split() == ["NAME", "CREATED", "REVOKED"]
    assert line.split()[0] == "ops-alice"
    assert line.endswith("-")
    assert token not in listed.stdout
    assert _hashes(engine)["ops-alice"][0] not in listed.stdout

    revoked = admin_token_cli("revoke", "ops-alice")
    assert revoked.returncode == 0, revoked.stderr
    assert "revoked" in revoked.stdout
    revoked_at = _hashes(engine)["ops-alice"][1]
    assert revoked_at is not None
    with pytest.raises(grpc.RpcError) as err:
        stubs.admin.ListCustomers(pb.ListCustomersRequest(), metadata=bearer(token), timeout=10)
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED

    again = admin_token_cli("revoke", "ops-alice")
    assert again.returncode == 0, again.stderr
    assert _hashes(engine)["ops-alice"][1] == revoked_at  # the first revocation time is kept
    assert not admin_token_cli("list").stdout.splitlines()[1].endswith("-")


def test_admin_token_cli_errors_are_one_line_and_change_nothing(
    admin_token_cli: Callable[..., Result], engine: Engine, db: object
) -> None:
    assert admin_token_cli("create", "ops").returncode == 0
    before = _hashes(engine)

    duplicate = admin_token_cli("create", "ops")
    assert duplicate.returncode == 2
    assert duplicate.stderr.strip().endswith(
        "an admin token named 'ops' already exists (names are never reused, even after revocation)"
    )
    assert "Traceback" not in duplicate.stderr

    unknown = admin_token_cli("revoke", "nobody")
    assert unknown.returncode == 2
    assert unknown.stderr.strip().endswith("no admin token named 'nobody'")
    assert "Traceback" not in unknown.stderr

    empty = admin_token_cli("create", " ")
    assert empty.returncode == 2
    assert "name: must be 1..64 characters" in empty.stderr
    assert _hashes(engine) == before
