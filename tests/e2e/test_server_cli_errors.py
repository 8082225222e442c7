"""`fleet-server` as a first-time user meets it: a wrong or busy port is one line and exit 2, and the
commands that are not `serve` print what they are for and nothing else."""

from __future__ import annotations

import os
import socket
import subprocess

import pytest
from sqlalchemy import Engine, text

from tests.support.process import cli, free_port


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [cli("fleet-server"), *args],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    "listen", ["127.0.0.1:99999", "127.0.0.1:-1", "127.0.0.1", "127.0.0.1:http", ":50051"]
)
def test_a_port_grpc_would_not_bind_as_written_is_refused(listen: str) -> None:
    result = _run("serve", env={"FLEET_LISTEN": listen})
    assert result.returncode == 2
    assert result.stderr == (
        f"fleet-server: --listen {listen}: expected host:port with a port from 0 to 65535 "
        "(127.0.0.1:50051, [::1]:50051)\n"
    )


def test_a_busy_port_is_one_line_and_exit_2(database_url: str) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        result = _run("serve", "--listen", f"127.0.0.1:{port}", env={"FLEET_DATABASE_URL": database_url})
    assert result.returncode == 2
    assert result.stderr == (
        f"fleet-server: cannot listen on 127.0.0.1:{port}: Address already in use; "
        "choose another address with --listen or FLEET_LISTEN\n"
    )
    assert result.stdout == ""


def test_an_address_of_another_machine_is_one_line_and_exit_2(database_url: str) -> None:
    listen = f"192.0.2.1:{free_port()}"  # TEST-NET-1: never this machine's
    result = _run("serve", "--listen", listen, "--insecure", env={"FLEET_DATABASE_URL": database_url})
    assert result.returncode == 2
    assert result.stderr.startswith(f"fleet-server: cannot listen on {listen}: ")
    assert result.stderr.count("\n") == 1


def test_admin_token_create_prints_the_token_and_one_line(
    database_url: str, engine: Engine, db: object
) -> None:
    env = {k: v for k, v in os.environ.items() if k != "FLEET_LOG_LEVEL"}
    created = subprocess.run(
        [cli("fleet-server"), "admin-token", "create", "first-hour"],
        env={**env, "FLEET_DATABASE_URL": database_url},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert created.returncode == 0, created.stderr
    assert created.stdout.startswith("fleetadm_")
    assert created.stdout.count("\n") == 1
    # No alembic narration, no embedded-database line, no platformdirs warning: only the note.
    assert created.stderr == "admin token 'first-hour' created; it is shown only this once\n"
    with engine.connect() as conn:
        assert conn.scalar(text("SELECT count(*) FROM fleet.admin_tokens WHERE name = 'first-hour'")) == 1


@pytest.mark.parametrize("command", ["migrate", "admin-token"])
def test_the_database_commands_list_only_their_own_flags(command: str) -> None:
    shown = _run(command, "--help")
    assert shown.returncode == 0
    for flag in ("--database-url", "--data-dir", "--log-level"):
        assert flag in shown.stdout
    for serving in ("--listen", "--max-message-bytes", "--workers", "--tls-cert", "--reflection"):
        assert serving not in shown.stdout
    assert "--listen" in _run("serve", "--help").stdout  # serve still documents every setting
