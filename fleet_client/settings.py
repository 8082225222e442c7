"""fleet-push settings: one typed object filled from `FLEET_*` environment variables and a `.env` file.

The process environment wins over the file, so a deployment can pin a value that the file also
sets. Every field declares its help text once; `fleet-push --help` lists them all. The token is
never part of a repr or a log line.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fleet_client.backoff import Backoff
from fleet_client.client import CallOptions, TlsOptions
from fleet_client.dotenv import read_dotenv
from fleet_client.errors import ConfigurationError
from fleet_client.push_options import PushOptions
from fleet_client.state import DEFAULT_STATE_URL
from fleet_client.token_form import check_customer_token

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off", ""})


def _setting(default: Any, help_text: str, **extra: Any) -> Any:
    return field(default=default, metadata={"help": help_text}, **extra)


@dataclass(frozen=True)
class PushSettings:
    """Everything `fleet-push` can be told. Env var = `FLEET_` + upper-cased field name."""

    ingest_enabled: bool = _setting(
        False, "push at all: true to push; unset or false keeps fleet sync off (opt-in)"
    )
    server: str = _setting("127.0.0.1:50051", "host:port of fleet-server")
    token: str = _setting("", "the customer token issued by the operator (fleet_…)", repr=False)
    source_url: str = _setting("", "SQLAlchemy URL of the portal database (e.g. sqlite:///portal.db)")
    source_schema: str = _setting("", "database schema holding the portal tables, when not the default")
    state_url: str = _setting(DEFAULT_STATE_URL, "SQLAlchemy URL where the push state is kept")
    tls: bool = _setting(False, "use TLS with the system's trusted roots (implied by FLEET_TLS_CA/CERT)")
    tls_ca: str = _setting("", "CA bundle (PEM) to verify the server; enables TLS")
    tls_cert: str = _setting("", "client certificate (PEM) for mTLS")
    tls_key: str = _setting("", "client private key (PEM) for mTLS")
    tls_server_name: str = _setting("", "expected server name in its certificate, when not the host")
    insecure: bool = _setting(False, "allow plaintext to a non-loopback server (the token travels in clear)")
    interval_s: float = _setting(20.0, "seconds between ticks of `fleet-push run`")
    batch_size: int = _setting(500, "measurement rows per batch")
    max_rows_per_tick: int = _setting(5_000, "measurement rows per tick at most")
    safety_lag_s: float = _setting(5.0, "only rows received at least this many seconds ago are read")
    resync_interval_s: float = _setting(86_400.0, "resend an unchanged reference snapshot after this long")
    window: int = _setting(4, "measurement batches sent ahead of their acknowledgement")
    backoff_base_s: float = _setting(20.0, "first retry delay ceiling after a failure, seconds")
    backoff_cap_s: float = _setting(600.0, "largest retry delay ceiling, seconds")
    deadline_s: float = _setting(60.0, "deadline of one reference snapshot call, seconds")
    stream_deadline_s: float = _setting(600.0, "deadline of one tick's measurement stream, seconds")
    keepalive_s: float = _setting(60.0, "HTTP/2 keepalive ping interval on an active call, seconds")
    lock_stale_s: float = _setting(300.0, "a push-state lock without heartbeat this long is taken over")
    log_level: str = _setting("INFO", "log level (DEBUG, INFO, WARNING, ERROR)")
    metrics_listen: str = _setting(
        "", "host:port serving Prometheus metrics of `fleet-push run`; empty = off"
    )

    @classmethod
    def load(
        cls, env: Mapping[str, str] | None = None, env_file: Path | None = Path(".env"), **overrides: Any
    ) -> PushSettings:
        """Settings from `env_file` (if it exists), then the environment on top, then `overrides`."""
        merged: dict[str, str] = dict(read_dotenv(env_file)) if env_file is not None else {}
        merged.update(os.environ if env is None else env)
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            raw = merged.get(env_name(f.name))
            if raw is not None:
                values[f.name] = _parse(f, raw)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    # -- what the rest of the client is built from -----------------------------------------------

    def tls_options(self) -> TlsOptions:
        return TlsOptions(
            enabled=self.tls,
            ca_file=Path(self.tls_ca) if self.tls_ca else None,
            cert_file=Path(self.tls_cert) if self.tls_cert else None,
            key_file=Path(self.tls_key) if self.tls_key else None,
            server_name=self.tls_server_name or None,
        )

    def call_options(self) -> CallOptions:
        return CallOptions(
            deadline_s=self.deadline_s, stream_deadline_s=self.stream_deadline_s, keepalive_s=self.keepalive_s
        )

    def push_options(self) -> PushOptions:
        return PushOptions(
            batch_size=self.batch_size,
            max_rows_per_tick=self.max_rows_per_tick,
            safety_lag_s=self.safety_lag_s,
            resync_interval_s=self.resync_interval_s,
            window=self.window,
        )

    def backoff(self) -> Backoff:
        return Backoff(base_s=self.backoff_base_s, cap_s=self.backoff_cap_s)

    def require_push_settings(self) -> None:
        """The settings a push cannot do without, checked before anything is opened or dialled."""
        missing = [env_name(name) for name in ("token", "source_url", "server") if not getattr(self, name)]
        if missing:
            raise ConfigurationError(f"fleet sync is enabled but {', '.join(missing)} is not set")
        check_customer_token(self.token.strip())

    def push_target(self) -> str:
        """A fingerprint of where and as whom this pusher pushes (server and token, not reversible).

        When it changes, earlier failures say nothing about the next attempt: the push state
        drops their back-off (`PushState.retarget`).
        """
        seen = f"{self.server.strip()}\n{self.token.strip()}".encode()
        return hashlib.sha256(seen).hexdigest()[:16]


def env_name(field_name: str) -> str:
    return f"FLEET_{field_name.upper()}"


def settings_help() -> str:
    """One line per setting for `fleet-push --help`."""
    lines = []
    for f in dataclasses.fields(PushSettings):
        default = "" if f.name == "token" else f" [default {f.default}]"
        lines.append(f"  {env_name(f.name):<26} {f.metadata['help']}{default}")
    return "\n".join(lines)


def _parse(f: dataclasses.Field[Any], raw: str) -> Any:
    kind = str(f.type)
    value = raw.strip()
    if kind == "bool":
        # Opt-in: only an explicit yes turns a switch on, and anything unrecognised is refused
        # loudly, the master switch included: `ture` must not pass for a deliberate "off".
        lowered = value.lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise ConfigurationError(
            f"{env_name(f.name)}: {raw!r} is not true/false (true, yes, on, 1 or false, no, off, 0)"
        )
    try:
        if kind == "int":
            return int(value)
        if kind == "float":
            return float(value)
    except ValueError:
        raise ConfigurationError(f"{env_name(f.name)}: {raw!r} is not a valid {kind}") from None
    return value
