"""`fleetctl customers …` against a real `fleet-server` started the way `make run` starts it.

The server bootstraps its admin token into its data folder; fleetctl is expected to find it
there with no flag. Most commands run in this process (`fleetctl`'s `main`) to keep the suite
fast; the default-token lookup and the error output run the installed `fleetctl` command.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import stat
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, select

from fleet_server.db.models import Customer
from fleet_server.fleetctl import main as fleetctl
from fleet_server.fleetctl.customers import parse_duration
from tests.support.database import truncate_all
from tests.support.process import ServerProcess, cli, free_port

pytestmark = pytest.mark.e2e


@dataclass(frozen=True)
class Running:
    server: ServerProcess
    home: Path  # the working directory `make run` would have; holds .fleet/admin-token
    token: str


@pytest.fixture(scope="module")
def running(database_url: str, engine: Engine, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    truncate_all(engine)
    home = tmp_path_factory.mktemp("fleetctl-home")
    server = ServerProcess(database_url, "--bootstrap-admin-token", data_dir=home / ".fleet").start()
    try:
        token_file = home / ".fleet" / "admin-token"
        yield Running(server, home, token_file.read_text().strip())
    finally:
        server.kill()
        truncate_all(engine)


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


@pytest.fixture
def fleetctl_run(running: Running, capsys: pytest.CaptureFixture[str]) -> Callable[..., Result]:
    """`fleetctl --server … --admin-token … ARGS` in this process."""

    def run(*args: str) -> Result:
        capsys.readouterr()
        try:
            code = fleetctl.main(["--server", running.server.target, "--admin-token", running.token, *args])
        except SystemExit as exc:  # argparse errors
            code = int(exc.code or 0)
        out, err = capsys.readouterr()
        return Result(code, out, err)

    return run


def _installed_fleetctl(running: Running, *args: str, env: dict[str, str] | None = None) -> Result:
    base = {
        k: v
        for k, v in os.environ.items()
        if k not in ("FLEET_ADMIN_TOKEN", "FLEET_DATA_DIR", "FLEET_SERVER")
    }
    proc = subprocess.run(
        [cli("fleetctl"), *args],
        cwd=running.home,
        env={**base, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


def _count(engine: Engine, code: str) -> int:
    with engine.connect() as conn:
        return int(conn.scalar(select(func.count()).where(Customer.code == code)) or 0)


def test_bootstrap_token_file_is_private_and_fleetctl_finds_it_by_default(running: Running) -> None:
    token_file = running.home / ".fleet" / "admin-token"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert running.token.startswith("fleetadm_")
    result = _installed_fleetctl(running, "--server", running.server.target, "customers", "list")
    assert result.code == 0, result.err
    assert result.out.splitlines()[0].split() == ["Code", "Name", "Active", "Created", "Token"]


def test_make_run_leaves_its_address_for_export_fleet_server(running: Running) -> None:
    address = (running.home / ".fleet" / "server").read_text().strip()
    assert address == running.server.target  # `export FLEET_SERVER=$(cat .fleet/server)` in the README
    result = _installed_fleetctl(running, "customers", "list", env={"FLEET_SERVER": address})
    assert result.code == 0, result.err


def test_create_prints_the_token_once_and_list_shows_the_customer(
    fleetctl_run: Callable[..., Result],
) -> None:
    created = fleetctl_run("customers", "create", "ACME", "--name", "Acme Ltd")
    assert created.code == 0, created.err
    lines = created.out.splitlines()
    assert lines[0] == "Customer ACME (Acme Ltd) created."
    assert lines[-1].startswith("fleet_")

    listed = fleetctl_run("customers", "list")
    assert listed.code == 0, listed.err
    row = next(line for line in listed.out.splitlines() if line.startswith("ACME"))
    assert "Acme Ltd" in row
    assert "yes" in row
    assert "issued " in row
    assert "old token valid until" not in row


def test_json_output_before_or_after_the_subcommand(fleetctl_run: Callable[..., Result]) -> None:
    created = fleetctl_run("--json", "customers", "create", "JSONCO", "--name", "Json Co")
    assert created.code == 0, created.err
    body = created.json()
    assert body["customer"]["code"] == "JSONCO"
    assert body["customer"]["is_active"] is True
    assert body["token"].startswith("fleet_")
    assert "previous_token_expires_at" not in body["customer"]

    for args in (("--json", "customers", "list"), ("customers", "list", "--json")):
        listed = fleetctl_run(*args)
        assert listed.code == 0, listed.err
        assert "JSONCO" in [c["code"] for c in listed.json()["customers"]]


def test_rotate_with_grace_shows_the_old_token_deadline(fleetctl_run: Callable[..., Result]) -> None:
    assert fleetctl_run("customers", "create", "ROTA", "--name", "Rota").code == 0
    rotated = fleetctl_run("customers", "rotate-token", "ROTA", "--grace", "30m")
    assert rotated.code == 0, rotated.err
    deadline = re.search(r"old token stays valid until (\S+ \S+) \(grace 30m\)", rotated.out)
    assert deadline, rotated.out
    assert rotated.out.splitlines()[-1].startswith("fleet_")

    listed = fleetctl_run("customers", "list")
    row = next(line for line in listed.out.splitlines() if line.startswith("ROTA"))
    assert f"old token valid until {deadline.group(1)}" in row

    cut = fleetctl_run("customers", "rotate-token", "ROTA", "--grace", "0s", "--json")
    assert cut.code == 0, cut.err
    assert "previous_token_expires_at" not in cut.json()["customer"]
    listed = fleetctl_run("customers", "list")
    row = next(line for line in listed.out.splitlines() if line.startswith("ROTA"))
    assert "old token valid until" not in row


def test_rotate_without_grace_uses_the_server_default(fleetctl_run: Callable[..., Result]) -> None:
    assert fleetctl_run("customers", "create", "DEFGRACE", "--name", "Default").code == 0
    body = fleetctl_run("--json", "customers", "rotate-token", "DEFGRACE").json()
    assert body["customer"]["previous_token_expires_at"] > body["customer"]["token_issued_at"]


def test_deactivate_and_activate(fleetctl_run: Callable[..., Result]) -> None:
    assert fleetctl_run("customers", "create", "ONOFF", "--name", "On Off").code == 0
    off = fleetctl_run("customers", "deactivate", "ONOFF")
    assert off.code == 0, off.err
    assert "ONOFF is deactivated" in off.out
    assert fleetctl_run("customers", "activate", "ONOFF", "--json").json()["customer"]["is_active"] is True
    assert fleetctl_run("--json", "customers", "deactivate", "ONOFF").json()["customer"]["is_active"] is False


def test_delete_needs_yes_and_then_reports_rows_per_table(
    fleetctl_run: Callable[..., Result], engine: Engine
) -> None:
    assert fleetctl_run("customers", "create", "GONE", "--name", "Gone").code == 0
    refused = fleetctl_run("customers", "delete", "GONE")
    assert refused.code == 2
    assert "pass --yes to confirm" in refused.err
    assert _count(engine, "GONE") == 1

    deleted = fleetctl_run("customers", "delete", "GONE", "--yes")
    assert deleted.code == 0, deleted.err
    assert re.search(r"^customers\s+1$", deleted.out, re.MULTILINE)
    assert "Customer GONE and all its data erased" in deleted.out
    assert _count(engine, "GONE") == 0

    assert fleetctl_run("customers", "create", "GONE2", "--name", "Gone").code == 0
    body = fleetctl_run("customers", "delete", "GONE2", "--yes", "--json").json()
    assert body["deleted_rows"]["customers"] == 1  # int64 as a JSON number (docs/operations.md says why)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ("customers", "create", "acme", "--name", "x"),
            "fleetctl: INVALID_ARGUMENT: code: must match [A-Z0-9_-]{2,32}",
        ),
        (("customers", "rotate-token", "NOPE"), "fleetctl: NOT_FOUND: no customer with code NOPE"),
        (("customers", "activate", "NOPE"), "fleetctl: NOT_FOUND: no customer with code NOPE"),
        (("customers", "delete", "NOPE", "--yes"), "fleetctl: NOT_FOUND: no customer with code NOPE"),
    ],
)
def test_server_errors_print_the_servers_message(
    fleetctl_run: Callable[..., Result], args: tuple[str, ...], message: str
) -> None:
    result = fleetctl_run(*args)
    assert result.code == 1
    assert result.err.strip() == message
    assert result.out == ""


def test_taken_code_is_reported(fleetctl_run: Callable[..., Result]) -> None:
    assert fleetctl_run("customers", "create", "TAKEN", "--name", "First").code == 0
    again = fleetctl_run("customers", "create", "TAKEN", "--name", "Second")
    assert again.code == 1
    assert again.err.strip() == "fleetctl: ALREADY_EXISTS: customer code TAKEN is taken"


def test_a_bad_grace_is_refused_before_calling_the_server(fleetctl_run: Callable[..., Result]) -> None:
    result = fleetctl_run("customers", "rotate-token", "ACME", "--grace", "5x")
    assert result.code == 2
    assert "'5x' is not a duration" in result.err


def test_installed_fleetctl_errors_are_one_line_without_a_traceback(running: Running) -> None:
    wrong_token = _installed_fleetctl(
        running,
        "--server",
        running.server.target,
        "customers",
        "list",
        env={"FLEET_ADMIN_TOKEN": "fleetadm_nope"},
    )
    assert wrong_token.code == 1
    assert wrong_token.err.strip() == "fleetctl: UNAUTHENTICATED: malformed token"

    port = free_port()
    nobody = _installed_fleetctl(
        running, "--server", f"127.0.0.1:{port}", "--timeout", "3", "customers", "list"
    )
    assert nobody.code == 1
    # Where it looked, and how to point it elsewhere (`make run` on another port is the usual cause).
    assert nobody.err == (
        f"fleetctl: cannot reach fleet-server at 127.0.0.1:{port} (Connection refused): is it running "
        "there? Point fleetctl at it with --server HOST:PORT or FLEET_SERVER (the address `make run` "
        "was given as FLEET_LISTEN)\n"
    )
    assert "Traceback" not in nobody.err + wrong_token.err


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("24h", 86400), ("30m", 1800), ("90s", 90), ("0s", 0), ("1h30m", 5400), ("2d", 172800)],
)
def test_parse_duration(text: str, seconds: int) -> None:
    assert parse_duration(text).seconds == seconds


@pytest.mark.parametrize("text", ["", "24", "-1h", "1.5h", "h", "1h 30m", "30m1h"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        parse_duration(text)
