"""Server settings: one typed object, filled from `FLEET_*` environment variables and flags.

Every field declares its environment variable and help text once, so `fleet-server --help`
documents every setting and no setting can exist that the help does not mention.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


def _setting(default: Any, help_text: str, *, flag: str | None = None) -> Any:
    return field(default=default, metadata={"help": help_text, "flag": flag})


@dataclass(frozen=True)
class Settings:
    """Everything `fleet-server` can be told. Env var = `FLEET_` + upper-cased field name."""

    database_url: str | None = _setting(
        None,
        "PostgreSQL URL (postgresql+psycopg://…); unset = an embedded PostgreSQL in --data-dir",
    )
    query_database_url: str | None = _setting(None, "optional read replica URL for FleetQueryService reads")
    data_dir: Path = _setting(
        Path(".fleet"), "folder for the embedded PostgreSQL and the bootstrap admin token"
    )
    listen: str = _setting("127.0.0.1:50051", "host:port to serve on")
    reflection: bool = _setting(True, "serve gRPC server reflection")
    insecure: bool = _setting(False, "allow plaintext on a non-loopback address")
    tls_cert: Path | None = _setting(None, "server certificate chain (PEM)")
    tls_key: Path | None = _setting(None, "server private key (PEM)")
    tls_client_ca: Path | None = _setting(
        None, "CA bundle (PEM) to verify client certificates against; enables mTLS"
    )
    shutdown_grace_s: float = _setting(10.0, "seconds in-flight RPCs get to finish on SIGTERM/SIGINT")
    health_poll_s: float = _setting(
        5.0, "seconds between database probes; health is NOT_SERVING while a probe fails"
    )
    health_timeout_s: float = _setting(
        2.0, "seconds a database probe may take; no answer in time (a frozen database) is NOT_SERVING"
    )
    statement_timeout_s: float = _setting(
        30.0,
        "longest one SQL statement may run before the database cancels it "
        "(the call gets UNAVAILABLE with a retry hint); 0 = no limit",
    )
    cost_statement_timeout_s: float = _setting(
        300.0, "statement timeout of ComputeCosts' pricing query, which reads every reading of its range"
    )
    max_message_bytes: int = _setting(4 * 1024 * 1024, "largest request message accepted, in bytes")
    max_metadata_bytes: int = _setting(16 * 1024, "largest request metadata accepted, in bytes")
    max_concurrent_rpcs: int = _setting(
        4096,
        "hard ceiling on calls in progress, counted by gRPC before any budget below and above their "
        "sum; a last resort (over it a call gets a bare RESOURCE_EXHAUSTED)",
    )
    max_calls_per_customer: int = _setting(
        8, "calls of one customer in progress at once (streams of every kind), per process"
    )
    max_customer_calls: int = _setting(
        1000, "calls of all customers together in progress at once, per process"
    )
    max_operator_calls: int = _setting(
        64, "admin and query calls in progress at once, per process: the operators' own share"
    )
    max_anonymous_streams: int = _setting(
        32, "streams without a token (health Watch, reflection) in progress at once, per process"
    )
    max_anonymous_calls: int = _setting(
        64, "unary calls without a token (health Check) in progress at once, per process"
    )
    stream_idle_s: float = _setting(
        60.0,
        "a request stream (a push, reflection) that sends nothing for this many seconds is ended "
        "with DEADLINE_EXCEEDED; what it had not had acknowledged is not written",
    )
    token_cache_entries: int = _setting(
        10_000,
        "customer tokens whose lookup each process keeps for up to a minute, trusted only while it "
        "hears every credential change from the database (one more connection per process; 0 = off)",
    )
    max_connection_age_s: float = _setting(
        900.0,
        "a client connection is asked to reconnect after about this many seconds, so connections "
        "re-spread over --workers and load balancers (its calls get 10 more minutes to finish)",
    )
    max_snapshot_rows: int = _setting(
        250_000, "largest reference-data snapshot accepted per stream, in rows (tariff periods count)"
    )
    max_snapshot_bytes: int = _setting(
        64 * 1024 * 1024, "largest reference-data snapshot accepted per stream, in bytes of its messages"
    )
    max_snapshot_memory_bytes: int = _setting(
        384 * 1024 * 1024,
        "memory all reference-data snapshots in progress may hold, as estimated from their bytes and "
        "rows; past it a stream is refused with a retry hint (0 = no limit)",
    )
    max_batch_memory_bytes: int = _setting(
        256 * 1024 * 1024,
        "memory all measurement batches read but not yet written may hold, as estimated from their "
        "bytes and rows; past it a batch is refused with a retry hint (0 = no limit)",
    )
    db_pool_size: int = _setting(10, "database connections per process (and threads running database work)")
    db_queue_timeout_s: float = _setting(
        5.0, "longest a call waits for its database turn before it is refused as UNAVAILABLE (retry hint)"
    )
    token_grace_s: float = _setting(
        24 * 3600.0, "default grace window of a rotated customer token, in seconds"
    )
    ingest_rows_per_s: float = _setting(
        200_000.0, "per-customer measurement row budget: sustained rows per second"
    )
    ingest_burst_rows: int = _setting(1_000_000, "per-customer measurement row budget: burst size in rows")
    new_partitions_burst: int = _setting(
        36, "monthly measurement partitions one customer's batches may create at once"
    )
    new_partitions_per_hour: float = _setting(
        60.0,
        "monthly measurement partitions one customer's batches may create per hour, sustained; 0 = no limit",
    )
    max_cost_span_days: int = _setting(400, "longest ComputeCosts range, in days")
    workers: int = _setting(1, "server processes sharing the port through SO_REUSEPORT")
    metrics_listen: str | None = _setting(
        None, "host:port serving Prometheus metrics at /metrics (e.g. 127.0.0.1:9464); unset = no metrics"
    )
    metrics_dir: Path | None = _setting(
        None,
        "with --workers: folder where the workers keep their metric files, emptied at start; "
        "unset = a private temporary folder",
    )
    compress: bool = _setting(
        True,
        "run cold-storage compression in the background (--no-compress: never; one process of a "
        "fleet runs it at a time)",
    )
    compress_interval_s: float = _setting(
        3600.0, "seconds between background compression runs (the first one interval after start)"
    )
    compress_after: str = _setting(
        "7d",
        "UTC days ending this long ago or longer are compressed (a duration: 7d, 36h, 90m, 3600s)",
    )
    log_level: str = _setting("INFO", "log level (DEBUG, INFO, WARNING, ERROR)")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Settings from `FLEET_*` variables, then `overrides` on top."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            raw = env.get(f"FLEET_{f.name.upper()}")
            if raw is not None and raw != "":
                values[f.name] = _parse(f, raw)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser, only: Collection[str] | None = None) -> None:
        """One flag per setting (`--max-message-bytes`); absent from the namespace unless given.

        Added to the top-level parser and to each subcommand, so both `fleet-server --listen X
        serve` and `fleet-server serve --listen X` work and neither level resets the other.
        `only` names the settings a subcommand uses, so its `--help` lists those and no others.
        """
        for f in dataclasses.fields(cls):
            if only is not None and f.name not in only:
                continue
            flag = f.metadata.get("flag") or "--" + f.name.replace("_", "-")
            env = f"FLEET_{f.name.upper()}"
            help_text = f"{f.metadata['help']} [env {env}; default {f.default}]"
            if f.type in ("bool", bool):
                parser.add_argument(
                    flag,
                    dest=f.name,
                    action=argparse.BooleanOptionalAction,
                    default=argparse.SUPPRESS,
                    help=help_text,
                )
            else:
                parser.add_argument(flag, dest=f.name, default=argparse.SUPPRESS, help=help_text)

    @classmethod
    def from_args(cls, args: argparse.Namespace, env: Mapping[str, str] | None = None) -> Settings:
        """Env first, then whatever flags were given."""
        overrides: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            value = getattr(args, f.name, None)
            if value is not None:
                overrides[f.name] = value if isinstance(value, bool) else _parse(f, str(value))
        return cls.from_env(env, **overrides)


def _parse(f: dataclasses.Field[Any], raw: str) -> Any:
    kind = str(f.type)
    try:
        if kind == "bool":
            return raw.strip().lower() in {"1", "true", "yes", "on"}
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
        if "Path" in kind:
            return Path(raw)
    except ValueError as exc:
        raise SystemExit(f"FLEET_{f.name.upper()}: {raw!r} is not a valid {kind}") from exc
    return raw
