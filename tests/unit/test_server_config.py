"""Settings the server refuses to start with, and which addresses count as loopback."""

from __future__ import annotations

from pathlib import Path

import pytest

from fleet_server.config import Settings
from fleet_server.server import ConfigurationError, check_settings, is_loopback, server_credentials
from fleet_server.supervisor import worker_environment


@pytest.mark.parametrize(
    ("listen", "loopback"),
    [
        ("127.0.0.1:50051", True),
        ("127.0.0.2:1", True),
        ("localhost:50051", True),
        ("[::1]:50051", True),
        ("0.0.0.0:50051", False),
        ("[::]:50051", False),
        ("10.1.2.3:50051", False),
        ("fleet.example.com:50051", False),
    ],
)
def test_is_loopback(listen, loopback):
    assert is_loopback(listen) is loopback


def test_plaintext_on_loopback_is_allowed():
    assert server_credentials(Settings(listen="127.0.0.1:50051")) is None


def test_plaintext_on_non_loopback_is_refused_with_the_way_out():
    with pytest.raises(ConfigurationError) as exc:
        check_settings(Settings(listen="0.0.0.0:50051"))
    assert "refusing plaintext on non-loopback address 0.0.0.0:50051" in str(exc.value)
    assert "--insecure" in str(exc.value)


def test_insecure_allows_plaintext_anywhere():
    check_settings(Settings(listen="0.0.0.0:50051", insecure=True))


def test_client_ca_without_server_cert_is_refused():
    with pytest.raises(ConfigurationError, match="--tls-client-ca needs --tls-cert and --tls-key"):
        check_settings(Settings(tls_client_ca=Path("ca.pem")))


def test_cert_without_key_is_refused():
    with pytest.raises(ConfigurationError, match="--tls-cert and --tls-key go together"):
        check_settings(Settings(tls_cert=Path("cert.pem")))


def test_unreadable_certificate_names_the_flag_and_file(tmp_path):
    key = tmp_path / "key.pem"
    key.write_text("not used")
    missing = tmp_path / "missing.pem"
    with pytest.raises(ConfigurationError) as exc:
        check_settings(Settings(tls_cert=missing, tls_key=key))
    assert f"cannot read --tls-cert {missing}" in str(exc.value)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"workers": 0}, "--workers must be positive"),
        ({"max_message_bytes": -1}, "--max-message-bytes must be positive"),
        ({"max_concurrent_rpcs": 0}, "--max-concurrent-rpcs must be positive"),
        ({"health_poll_s": 0.0}, "--health-poll-s must be positive"),
        ({"max_calls_per_customer": 0}, "--max-calls-per-customer must be positive"),
        ({"max_anonymous_streams": 0}, "--max-anonymous-streams must be positive"),
        ({"stream_idle_s": 0.0}, "--stream-idle-s must be positive"),
        ({"max_connection_age_s": -1.0}, "--max-connection-age-s must be positive"),
        ({"max_snapshot_rows": 0}, "--max-snapshot-rows must be positive"),
        ({"max_snapshot_bytes": 0}, "--max-snapshot-bytes must be positive"),
        (
            {"max_concurrent_rpcs": 1160},
            r"--max-concurrent-rpcs \(1160\) must be above the sum of the call budgets \(1160\)",
        ),
        ({"shutdown_grace_s": -1.0}, "--shutdown-grace-s must not be negative"),
        ({"workers": 2, "listen": "127.0.0.1:0"}, "--workers needs a fixed port"),
    ],
)
def test_bad_numbers_are_refused(override, message):
    with pytest.raises(ConfigurationError, match=message):
        check_settings(Settings(**override))


def test_the_ceiling_may_sit_just_above_the_budgets():
    check_settings(Settings(max_concurrent_rpcs=1161))
    check_settings(Settings(max_customer_calls=10, max_concurrent_rpcs=200))


def test_worker_environment_carries_every_setting_to_the_workers():
    settings = Settings(
        database_url="postgresql+psycopg://u:p@db/fleet?host=/run/pg",
        listen="0.0.0.0:6000",
        insecure=True,
        reflection=False,
        tls_cert=Path("/etc/fleet/cert.pem"),
        workers=3,
        shutdown_grace_s=2.5,
    )
    env = worker_environment(settings, base={"PATH": "/bin", "FLEET_QUERY_DATABASE_URL": "stale"})
    assert env["PATH"] == "/bin"
    assert "FLEET_QUERY_DATABASE_URL" not in env  # None in the settings: not inherited either
    assert Settings.from_env(env) == settings
