"""TLS and mTLS with a throwaway CA made by the `openssl` CLI: real handshakes, real refusals."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

SERVING = health_pb2.HealthCheckResponse.SERVING


@dataclass(frozen=True)
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    stranger_ca: Path
    stranger_cert: Path
    stranger_key: Path


def _openssl(folder: Path, *args: str) -> None:
    subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True)


def _ca(folder: Path, name: str) -> None:
    _openssl(
        folder,
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", f"{name}.key", "-out", f"{name}.pem", "-days", "2", "-subj", f"/CN={name}",
    )  # fmt: skip


def _leaf(folder: Path, ca: str, name: str, extensions: str) -> None:
    (folder / f"{name}.ext").write_text(extensions + "\n")
    _openssl(
        folder,
        "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}",
    )  # fmt: skip
    _openssl(
        folder,
        "x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key",
        "-CAcreateserial", "-out", f"{name}.pem", "-days", "2", "-extfile", f"{name}.ext",
    )  # fmt: skip


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    folder = tmp_path_factory.mktemp("pki")
    _ca(folder, "fleet-ca")
    _leaf(
        folder,
        "fleet-ca",
        "server",
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth",
    )
    _leaf(folder, "fleet-ca", "client", "extendedKeyUsage=clientAuth")
    _ca(folder, "stranger-ca")
    _leaf(folder, "stranger-ca", "stranger", "extendedKeyUsage=clientAuth")
    return Pki(
        ca=folder / "fleet-ca.pem",
        server_cert=folder / "server.pem",
        server_key=folder / "server.key",
        client_cert=folder / "client.pem",
        client_key=folder / "client.key",
        stranger_ca=folder / "stranger-ca.pem",
        stranger_cert=folder / "stranger.pem",
        stranger_key=folder / "stranger.key",
    )


def _check(channel: grpc.Channel) -> int:
    reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
    return int(reply.status)


def _tls(target: str, ca: Path, cert: Path | None = None, key: Path | None = None) -> grpc.Channel:
    credentials = grpc.ssl_channel_credentials(
        root_certificates=ca.read_bytes(),
        private_key=key.read_bytes() if key else None,
        certificate_chain=cert.read_bytes() if cert else None,
    )
    return grpc.secure_channel(target, credentials)


def _refused(channel: grpc.Channel) -> grpc.RpcError:
    with channel, pytest.raises(grpc.RpcError) as err:
        _check(channel)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    return err.value


def test_tls_server_accepts_a_tls_client(make_server, pki):
    server = make_server(tls_cert=pki.server_cert, tls_key=pki.server_key)
    with _tls(server.target, pki.ca) as channel:
        assert _check(channel) == SERVING


def test_tls_server_rejects_plaintext(make_server, pki):
    server = make_server(tls_cert=pki.server_cert, tls_key=pki.server_key)
    _refused(grpc.insecure_channel(server.target))


def test_tls_client_refuses_a_server_its_ca_did_not_sign(make_server, pki):
    server = make_server(tls_cert=pki.server_cert, tls_key=pki.server_key)
    _refused(_tls(server.target, pki.stranger_ca))


def test_mtls_accepts_a_client_certificate_signed_by_the_client_ca(make_server, pki):
    server = make_server(tls_cert=pki.server_cert, tls_key=pki.server_key, tls_client_ca=pki.ca)
    with _tls(server.target, pki.ca, pki.client_cert, pki.client_key) as channel:
        assert _check(channel) == SERVING


def test_mtls_rejects_a_client_without_a_certificate(make_server, pki):
    server = make_server(tls_cert=pki.server_cert, tls_key=pki.server_key, tls_client_ca=pki.ca)
    _refused(_tls(server.target, pki.ca))


def test_mtls_rejects_a_certificate_from_another_ca(make_server, pki):
    server = make_server(tls_cert=pki.server_cert, tls_key=pki.server_key, tls_client_ca=pki.ca)
    _refused(_tls(server.target, pki.ca, pki.stranger_cert, pki.stranger_key))
