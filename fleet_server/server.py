"""Building and running the grpc.aio server: services, auth, health, reflection, TLS, limits, shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import signal
from dataclasses import dataclass

import grpc
import grpc.aio
from fleet.v1 import (
    admin_service_pb2,
    admin_service_pb2_grpc,
    ingest_service_pb2,
    ingest_service_pb2_grpc,
    query_service_pb2,
    query_service_pb2_grpc,
)
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from fleet_server.app import App
from fleet_server.auth.interceptor import AuthInterceptor
from fleet_server.config import Settings
from fleet_server.services.admin import FleetAdminServicer
from fleet_server.services.ingest import FleetIngestServicer
from fleet_server.services.query import FleetQueryServicer

_LOGGER = logging.getLogger(__name__)

FLEET_SERVICES = (
    ingest_service_pb2.DESCRIPTOR.services_by_name["FleetIngestService"].full_name,
    query_service_pb2.DESCRIPTOR.services_by_name["FleetQueryService"].full_name,
    admin_service_pb2.DESCRIPTOR.services_by_name["FleetAdminService"].full_name,
)
HEALTH_POLL_S = 5.0


class ConfigurationError(Exception):
    """A setting combination the server refuses to start with; the message says which."""


def is_loopback(listen: str) -> bool:
    """True when `host:port` binds only to a loopback address."""
    host = listen.rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _read(path: object) -> bytes:
    with open(str(path), "rb") as handle:
        return handle.read()


def server_credentials(settings: Settings) -> grpc.ServerCredentials | None:
    """TLS (or mTLS) credentials from the settings; None for plaintext, which must be allowed."""
    if settings.tls_cert is None and settings.tls_key is None:
        if settings.tls_client_ca is not None:
            raise ConfigurationError("--tls-client-ca needs --tls-cert and --tls-key")
        if not is_loopback(settings.listen) and not settings.insecure:
            raise ConfigurationError(
                f"refusing plaintext on non-loopback address {settings.listen}: "
                "give --tls-cert/--tls-key, or --insecure to allow it"
            )
        return None
    if settings.tls_cert is None or settings.tls_key is None:
        raise ConfigurationError("--tls-cert and --tls-key go together")
    client_ca = _read(settings.tls_client_ca) if settings.tls_client_ca else None
    return grpc.ssl_server_credentials(
        [(_read(settings.tls_key), _read(settings.tls_cert))],
        root_certificates=client_ca,
        require_client_auth=client_ca is not None,
    )


@dataclass
class RunningServer:
    """A started server: the aio server, the port it got, and its health servicer."""

    server: grpc.aio.Server
    port: int
    health: health.aio.HealthServicer
    app: App
    _monitor: asyncio.Task[None] | None = None

    async def stop(self, grace: float | None = None) -> None:
        """Flip health to NOT_SERVING first, then stop, letting in-flight RPCs run for `grace`."""
        await self.health.enter_graceful_shutdown()
        if self._monitor is not None:
            self._monitor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._monitor
        await self.server.stop(self.app.settings.shutdown_grace_s if grace is None else grace)


async def _set_all(health_servicer: health.aio.HealthServicer, status: int) -> None:
    for name in ("", *FLEET_SERVICES):
        await health_servicer.set(name, status)


async def _watch_database(app: App, health_servicer: health.aio.HealthServicer) -> None:
    """Keep health in step with the database: NOT_SERVING while it does not answer."""
    serving = True
    while True:
        await asyncio.sleep(HEALTH_POLL_S)
        ok = await app.db.offload(app.db.ping)
        if ok != serving:
            serving = ok
            _LOGGER.warning("database %s", "reachable again" if ok else "unreachable")
            await _set_all(
                health_servicer,
                health_pb2.HealthCheckResponse.SERVING if ok else health_pb2.HealthCheckResponse.NOT_SERVING,
            )


async def start_server(app: App, listen: str | None = None) -> RunningServer:
    """Build, bind and start the server for `app` (`listen` overrides the setting, e.g. port 0)."""
    settings = app.settings
    address = listen or settings.listen
    credentials = server_credentials(settings if listen is None else _with_listen(settings, address))
    options = [
        ("grpc.max_receive_message_length", settings.max_message_bytes),
        ("grpc.max_send_message_length", max(settings.max_message_bytes, 4 * 1024 * 1024)),
        ("grpc.max_metadata_size", settings.max_metadata_bytes),
        ("grpc.so_reuseport", 1 if settings.workers > 1 else 0),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
    ]
    server = grpc.aio.server(
        interceptors=[AuthInterceptor(app.tokens)],  # type: ignore[arg-type]
        options=options,
        maximum_concurrent_rpcs=settings.max_concurrent_rpcs,
    )
    ingest_service_pb2_grpc.add_FleetIngestServiceServicer_to_server(FleetIngestServicer(app), server)
    query_service_pb2_grpc.add_FleetQueryServiceServicer_to_server(FleetQueryServicer(app), server)
    admin_service_pb2_grpc.add_FleetAdminServiceServicer_to_server(FleetAdminServicer(app), server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    if settings.reflection:
        reflection.enable_server_reflection(
            (*FLEET_SERVICES, health.SERVICE_NAME, reflection.SERVICE_NAME), server
        )
    if credentials is None:
        port = server.add_insecure_port(address)
    else:
        port = server.add_secure_port(address, credentials)
    if port == 0:
        raise ConfigurationError(f"could not bind {address}")
    await server.start()
    await _set_all(health_servicer, health_pb2.HealthCheckResponse.SERVING)
    running = RunningServer(server, port, health_servicer, app)
    running._monitor = asyncio.create_task(_watch_database(app, health_servicer))
    return running


def _with_listen(settings: Settings, listen: str) -> Settings:
    from dataclasses import replace

    return replace(settings, listen=listen)


async def serve_until_signalled(app: App) -> None:
    """Serve until SIGTERM/SIGINT, then stop gracefully within the configured grace period."""
    running = await start_server(app)
    _LOGGER.info(
        "fleet-server listening on %s (port %d, %s, reflection %s)",
        app.settings.listen,
        running.port,
        "TLS" if app.settings.tls_cert else "plaintext",
        "on" if app.settings.reflection else "off",
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    serving = asyncio.create_task(running.server.wait_for_termination())
    waiter = asyncio.create_task(stop.wait())
    await asyncio.wait({serving, waiter}, return_when=asyncio.FIRST_COMPLETED)
    _LOGGER.info("shutting down (grace %.1fs)", app.settings.shutdown_grace_s)
    await running.stop()
    waiter.cancel()
    _LOGGER.info("stopped")
