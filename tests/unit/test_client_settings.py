"""fleet-push settings: the `.env` reader, environment precedence, opt-in parsing, bad values."""

from __future__ import annotations

from pathlib import Path

import pytest

from fleet_client.dotenv import parse_dotenv
from fleet_client.errors import ConfigurationError
from fleet_client.settings import PushSettings, settings_help


def test_dotenv_forms() -> None:
    text = """
# a comment
FLEET_SERVER=fleet.example.com:443
export FLEET_TOKEN = fleet_abc  # trailing comment
FLEET_SOURCE_URL="sqlite:///portal db.sqlite"
FLEET_TLS_SERVER_NAME='literal # not a comment'
ESCAPED="a\\nb\\"c\\\\"
EMPTY=
HASH=value#kept
"""
    assert parse_dotenv(text) == {
        "FLEET_SERVER": "fleet.example.com:443",
        "FLEET_TOKEN": "fleet_abc",
        "FLEET_SOURCE_URL": "sqlite:///portal db.sqlite",
        "FLEET_TLS_SERVER_NAME": "literal # not a comment",
        "ESCAPED": 'a\nb"c\\',
        "EMPTY": "",
        "HASH": "value#kept",
    }


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("JUSTAKEY", ".env:1: expected KEY=value"),
        ("\n1BAD=x", ".env:2: expected KEY=value"),
        ('X="open', ".env:1: unterminated double quote"),
        ("X='open", ".env:1: unterminated single quote"),
        ('X="a" b', ".env:1: unexpected text after the closing quote"),
    ],
)
def test_dotenv_errors_name_the_line(text: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        parse_dotenv(text)


def test_environment_wins_over_the_file(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("FLEET_SERVER=from-file:1\nFLEET_BATCH_SIZE=250\nFLEET_INGEST_ENABLED=true\n")
    settings = PushSettings.load({"FLEET_SERVER": "from-env:2"}, env_file)
    assert settings.server == "from-env:2"
    assert settings.batch_size == 250
    assert settings.ingest_enabled is True


def test_missing_file_means_defaults(tmp_path: Path) -> None:
    settings = PushSettings.load({}, tmp_path / "absent.env")
    assert settings.ingest_enabled is False
    assert (settings.interval_s, settings.batch_size, settings.max_rows_per_tick) == (20.0, 500, 5000)
    assert (settings.safety_lag_s, settings.backoff_base_s, settings.backoff_cap_s) == (5.0, 20.0, 600.0)


@pytest.mark.parametrize(
    ("raw", "enabled"),
    [
        ("true", True),
        ("TRUE", True),
        ("1", True),
        ("yes", True),
        ("false", False),
        ("", False),
        ("off", False),
    ],
)
def test_only_an_explicit_yes_enables_pushing(raw: str, enabled: bool, tmp_path: Path) -> None:
    assert PushSettings.load({"FLEET_INGEST_ENABLED": raw}, None).ingest_enabled is enabled


def test_bad_numbers_and_switches_are_refused() -> None:
    with pytest.raises(ConfigurationError, match="FLEET_BATCH_SIZE: 'lots' is not a valid int"):
        PushSettings.load({"FLEET_BATCH_SIZE": "lots"}, None)
    with pytest.raises(ConfigurationError, match="FLEET_INSECURE: 'maybe' is not true/false"):
        PushSettings.load({"FLEET_INSECURE": "maybe"}, None)
    # The master switch too: a typo is not a deliberate "off".
    with pytest.raises(ConfigurationError, match="FLEET_INGEST_ENABLED: 'ture' is not true/false"):
        PushSettings.load({"FLEET_INGEST_ENABLED": "ture"}, None)


def test_token_stays_out_of_repr_and_help() -> None:
    settings = PushSettings.load({"FLEET_TOKEN": "fleet_secret_value"}, None)
    assert "fleet_secret_value" not in repr(settings)
    assert "FLEET_TOKEN" in settings_help()


def test_enabled_without_token_or_source_is_a_configuration_error() -> None:
    settings = PushSettings.load({"FLEET_INGEST_ENABLED": "true"}, None)
    with pytest.raises(ConfigurationError, match="FLEET_TOKEN, FLEET_SOURCE_URL is not set"):
        settings.require_push_settings()


def test_a_broken_env_edit_keeps_the_running_settings(tmp_path: Path) -> None:
    import argparse

    from fleet_client.cli import Runtime, _reload

    env_file = tmp_path / ".env"
    env_file.write_text("FLEET_BATCH_SIZE=100\n")
    args = argparse.Namespace(env_file=env_file)
    current = _reload(Runtime(env={}), args, PushSettings())
    assert current.batch_size == 100
    env_file.write_text('FLEET_BATCH_SIZE="100\n')  # a half-saved edit
    assert _reload(Runtime(env={}), args, current) is current
