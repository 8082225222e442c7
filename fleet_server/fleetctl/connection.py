"""How fleetctl reaches the server: target, admin token, TLS — from flags, env, or `make run`'s file."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path

import grpc
from fleet.v1 import admin_service_pb2_grpc, query_service_pb2_grpc


def add_connection_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--server",
        default=os.environ.get("FLEET_SERVER", "127.0.0.1:50051"),
        help="host:port of fleet-server [env FLEET_SERVER; default 127.0.0.1:50051]",
    )
    parser.add_argument(
        "--admin-token",
        default=None,
        help="admin token [env FLEET_ADMIN_TOKEN; default: the file `make run` wrote, "
        "$FLEET_DATA_DIR/admin-token]",
    )
    parser.add_argument(
        "--tls-ca",
        default=os.environ.get("FLEET_TLS_CA"),
        help="CA bundle (PEM) to verify the server; enables TLS [env FLEET_TLS_CA]",
    )
    parser.add_argument(
        "--tls-cert",
        default=os.environ.get("FLEET_TLS_CERT"),
        help="client certificate (PEM) for mTLS [env FLEET_TLS_CERT]",
    )
    parser.add_argument(
        "--tls-key",
        default=os.environ.get("FLEET_TLS_KEY"),
        help="client key (PEM) for mTLS [env FLEET_TLS_KEY]",
    )
    parser.add_argument("--timeout", type=float, default=30.0, help="deadline per call, seconds (30)")
    parser.add_argument("--json", action="store_true", help="print JSON for scripts instead of tables")


class MissingToken(Exception):
    """No admin token was given and none was found where `make run` leaves one."""


def resolve_admin_token(explicit: str | None) -> str:
    if explicit:
        return explicit.strip()
    from_env = os.environ.get("FLEET_ADMIN_TOKEN")
    if from_env:
        return from_env.strip()
    path = Path(os.environ.get("FLEET_DATA_DIR", ".fleet")) / "admin-token"
    if path.exists():
        return path.read_text().strip()
    raise MissingToken(
        f"no admin token: pass --admin-token, set FLEET_ADMIN_TOKEN, or run `make run` (writes {path})"
    )


@dataclass
class Connection:
    """An open channel plus the admin token's call metadata and a deadline."""

    channel: grpc.Channel
    metadata: tuple[tuple[str, str], ...]
    timeout: float

    @property
    def admin(self) -> admin_service_pb2_grpc.FleetAdminServiceStub:
        return admin_service_pb2_grpc.FleetAdminServiceStub(self.channel)

    @property
    def query(self) -> query_service_pb2_grpc.FleetQueryServiceStub:
        return query_service_pb2_grpc.FleetQueryServiceStub(self.channel)

    def close(self) -> None:
        self.channel.close()


def _read(path: str | None) -> bytes | None:
    return Path(path).read_bytes() if path else None


def connect(args: argparse.Namespace) -> Connection:
    token = resolve_admin_token(args.admin_token)
    if args.tls_ca or args.tls_cert:
        credentials = grpc.ssl_channel_credentials(
            root_certificates=_read(args.tls_ca),
            private_key=_read(args.tls_key),
            certificate_chain=_read(args.tls_cert),
        )
        channel = grpc.secure_channel(args.server, credentials)
    else:
        channel = grpc.insecure_channel(args.server)
    return Connection(channel, (("authorization", f"Bearer {token}"),), args.timeout)
