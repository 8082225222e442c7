"""Settings: env vars, flags on top, parse errors, and `--help` naming every setting."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from fleet_server.cli import build_parser
from fleet_server.config import Settings


def test_defaults_serve_loopback_with_reflection():
    settings = Settings.from_env({})
    assert settings.listen == "127.0.0.1:50051"
    assert settings.reflection is True
    assert settings.database_url is None
    assert settings.data_dir == Path(".fleet")


def test_env_variables_are_parsed_by_type():
    settings = Settings.from_env(
        {
            "FLEET_LISTEN": "0.0.0.0:6000",
            "FLEET_REFLECTION": "false",
            "FLEET_INSECURE": "yes",
            "FLEET_WORKERS": "3",
            "FLEET_SHUTDOWN_GRACE_S": "2.5",
            "FLEET_TLS_CERT": "/etc/fleet/cert.pem",
            "FLEET_HEALTH_POLL_S": "0.25",
        }
    )
    assert settings.listen == "0.0.0.0:6000"
    assert settings.reflection is False
    assert settings.insecure is True
    assert settings.workers == 3
    assert settings.shutdown_grace_s == 2.5
    assert settings.tls_cert == Path("/etc/fleet/cert.pem")
    assert settings.health_poll_s == 0.25


def test_empty_env_value_means_default():
    assert Settings.from_env({"FLEET_WORKERS": ""}).workers == 1


def test_flags_win_over_env():
    args = build_parser().parse_args(["serve", "--listen", "127.0.0.1:7000", "--no-reflection"])
    settings = Settings.from_args(args, env={"FLEET_LISTEN": "127.0.0.1:6000", "FLEET_REFLECTION": "true"})
    assert settings.listen == "127.0.0.1:7000"
    assert settings.reflection is False


def test_flag_before_the_subcommand_is_kept():
    args = build_parser().parse_args(["--workers", "2", "serve", "--listen", "127.0.0.1:7000"])
    settings = Settings.from_args(args, env={})
    assert settings.workers == 2
    assert settings.listen == "127.0.0.1:7000"


def test_unset_flag_leaves_env_value():
    args = build_parser().parse_args(["serve"])
    assert Settings.from_args(args, env={"FLEET_MAX_CONCURRENT_RPCS": "9"}).max_concurrent_rpcs == 9


def test_bad_number_names_the_variable():
    with pytest.raises(SystemExit) as exc:
        Settings.from_env({"FLEET_WORKERS": "two"})
    assert "FLEET_WORKERS: 'two' is not a valid int" in str(exc.value)


def test_help_documents_every_setting_with_its_env_variable(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for f in dataclasses.fields(Settings):
        assert "--" + f.name.replace("_", "-") in text
        assert f"env FLEET_{f.name.upper()}" in text
