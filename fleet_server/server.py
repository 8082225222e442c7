"""Building and running the grpc.aio server: services, auth, health, reflection, TLS, limits, shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import socket
from dataclasses import dataclass, field, replace

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
from grpc_reflection.v1alpha import reflection, reflection_pb2, reflection_pb2_grpc

from fleet_server import collector
from fleet_server.app import App
from fleet_server.auth.interceptor import AuthInterceptor
from fleet_server.config import Settings
from fleet_server.db.session import Database, HealthProbe
from fleet_server.domain.compression import CompressionJob, parse_duration
from fleet_server.errors import InvalidArgument
from fleet_server.rpc.admission import Limits
from fleet_server.services.admin import FleetAdminServicer
from fleet_server.services.ingest import FleetIngestServicer
from fleet_server.services.query import FleetQueryServicer
from fleet_server.signals import STOP_SIGNALS, stop_requested_early
from fleet_server.telemetry import sampler
from fleet_server.telemetry.exposition import (
    MetricsAddressError,
    MetricsEndpoint,
    parse_listen,
    serve_metrics,
    with_process_collectors,
)

_LOGGER = logging.getLogger(__name__)
PUSH_MEASUREMENTS = "/fleet.v1.FleetIngestService/PushMeasurements"

INGEST_SERVICE = ingest_service_pb2.DESCRIPTOR.services_by_name["FleetIngestService"].full_name
QUERY_SERVICE = query_service_pb2.DESCRIPTOR.services_by_name["FleetQueryService"].full_name
ADMIN_SERVICE = admin_service_pb2.DESCRIPTOR.services_by_name["FleetAdminService"].full_name
FLEET_SERVICES = (INGEST_SERVICE, QUERY_SERVICE, ADMIN_SERVICE)
# grpcio-reflection only ships v1alpha; v1 has the same messages and field numbers, and
# `buf curl` (and newer grpcurl) ask for v1 first.
REFLECTION_V1_SERVICE = "grpc.reflection.v1.ServerReflection"

_SERVING = health_pb2.HealthCheckResponse.SERVING
_NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


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


def _read(setting: str, path: object) -> bytes:
    try:
        with open(str(path), "rb") as handle:
            return handle.read()
    except OSError as exc:
        raise ConfigurationError(f"cannot read {setting} {path}: {exc.strerror}") from exc


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
    client_ca = _read("--tls-client-ca", settings.tls_client_ca) if settings.tls_client_ca else None
    return grpc.ssl_server_credentials(
        [(_read("--tls-key", settings.tls_key), _read("--tls-cert", settings.tls_cert))],
        root_certificates=client_ca,
        require_client_auth=client_ca is not None,
    )


def check_listen(listen: str) -> None:
    """Refuse a `--listen` that gRPC would not bind as written (it maps port 99999 to a random one)."""
    host, colon, port = listen.rpartition(":")
    if not colon or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigurationError(
            f"--listen {listen}: expected host:port with a port from 0 to 65535 "
            "(127.0.0.1:50051, [::1]:50051)"
        )


def check_settings(settings: Settings) -> None:
    """Refuse bad settings before anything starts (database, workers), with a message saying why."""
    check_listen(settings.listen)
    server_credentials(settings)
    positive = {
        "--workers": settings.workers,
        "--max-message-bytes": settings.max_message_bytes,
        "--max-metadata-bytes": settings.max_metadata_bytes,
        "--max-concurrent-rpcs": settings.max_concurrent_rpcs,
        "--max-calls-per-customer": settings.max_calls_per_customer,
        "--max-customer-calls": settings.max_customer_calls,
        "--max-operator-calls": settings.max_operator_calls,
        "--max-anonymous-streams": settings.max_anonymous_streams,
        "--max-anonymous-calls": settings.max_anonymous_calls,
        "--stream-idle-s": settings.stream_idle_s,
        "--max-connection-age-s": settings.max_connection_age_s,
        "--db-pool-size": settings.db_pool_size,
        "--health-poll-s": settings.health_poll_s,
        "--db-queue-timeout-s": settings.db_queue_timeout_s,
        "--max-snapshot-rows": settings.max_snapshot_rows,
        "--max-snapshot-bytes": settings.max_snapshot_bytes,
        "--health-timeout-s": settings.health_timeout_s,
        "--compress-interval-s": settings.compress_interval_s,
    }
    for flag, value in positive.items():
        if value <= 0:
            raise ConfigurationError(f"{flag} must be positive, got {value}")
    budgets = Limits.from_settings(settings).total()
    if settings.max_concurrent_rpcs <= budgets:
        raise ConfigurationError(
            f"--max-concurrent-rpcs ({settings.max_concurrent_rpcs}) must be above the sum of the call "
            f"budgets ({budgets}): gRPC counts every call against it, so a lower ceiling would refuse "
            "callers whose own budget still has room"
        )
    not_negative = {
        "--shutdown-grace-s": settings.shutdown_grace_s,
        "--statement-timeout-s": settings.statement_timeout_s,
        "--cost-statement-timeout-s": settings.cost_statement_timeout_s,
    }
    for flag, value in not_negative.items():
        if value < 0:
            raise ConfigurationError(f"{flag} must not be negative, got {value}")
    try:
        parse_duration(settings.compress_after, "--compress-after")
    except InvalidArgument as exc:
        raise ConfigurationError(str(exc)) from None
    if settings.workers > 1 and settings.listen.rsplit(":", 1)[-1] == "0":
        raise ConfigurationError("--workers needs a fixed port: with port 0 each worker would get its own")
    if settings.metrics_listen is not None:
        try:
            parse_listen(settings.metrics_listen)
        except MetricsAddressError as exc:
            raise ConfigurationError(str(exc)) from None
        if settings.metrics_listen == settings.listen:
            raise ConfigurationError("--metrics-listen must differ from --listen")


@dataclass
class _DatabaseHealth:
    """Keeps health in step with the databases: the primary for everything, the reader for queries.

    Overall health is SERVING only while every fleet service is, so a load balancer that checks
    the overall status drains a process whose database is gone.
    """

    primary: HealthProbe
    reader: HealthProbe | None
    statuses: dict[str, int] = field(default_factory=dict)

    @classmethod
    def for_app(cls, app: App) -> _DatabaseHealth:
        timeout_s = app.settings.health_timeout_s
        reader = app.reader.probe(timeout_s) if app.reader is not app.db else None
        return cls(primary=app.db.probe(timeout_s), reader=reader)

    async def update(self, servicer: health.aio.HealthServicer) -> None:
        primary_ok = await self.primary.check()
        reader_ok = primary_ok if self.reader is None else await self.reader.check()
        wanted = {
            INGEST_SERVICE: _SERVING if primary_ok else _NOT_SERVING,
            ADMIN_SERVICE: _SERVING if primary_ok else _NOT_SERVING,
            QUERY_SERVICE: _SERVING if primary_ok and reader_ok else _NOT_SERVING,
        }
        wanted[""] = _SERVING if all(s == _SERVING for s in wanted.values()) else _NOT_SERVING
        for service, status in wanted.items():
            if self.statuses.get(service) != status:
                if service in self.statuses or status != _SERVING:
                    _LOGGER.warning(
                        "health of %s is now %s",
                        service or "the server",
                        health_pb2.HealthCheckResponse.ServingStatus.Name(status),
                    )
                await servicer.set(service, status)
        self.statuses = wanted

    async def watch(self, servicer: health.aio.HealthServicer, interval_s: float) -> None:
        while True:
            await asyncio.sleep(interval_s)
            await self.update(servicer)

    def close(self) -> None:
        self.primary.close()
        if self.reader is not None:
            self.reader.close()


@dataclass
class RunningServer:
    """A started server: the aio server, the port it got, and its health servicer."""

    server: grpc.aio.Server
    port: int
    health: health.aio.HealthServicer
    app: App
    _database_health: _DatabaseHealth | None = None
    _monitor: asyncio.Task[None] | None = None
    _metrics_sampler: asyncio.Task[None] | None = None
    compression: CompressionJob | None = None

    async def stop(self, grace: float | None = None) -> None:
        """Flip health to NOT_SERVING first, then stop, letting in-flight RPCs run for `grace`."""
        await self.health.enter_graceful_shutdown()
        if self.compression is not None:  # stops after the unit in progress
            await asyncio.to_thread(self.compression.stop, self.app.settings.shutdown_grace_s)
        for task in (self._monitor, self._metrics_sampler):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await self.server.stop(self.app.settings.shutdown_grace_s if grace is None else grace)
        await self.app.gate.locks.close()  # every stream has ended; lingering locks go now
        if self._database_health is not None:
            self._database_health.close()


def _enable_reflection(server: grpc.aio.Server) -> None:
    """Reflection v1alpha (grpcio-reflection) plus v1 answered by the same servicer."""
    names = (*FLEET_SERVICES, health.SERVICE_NAME, reflection.SERVICE_NAME)
    servicer = reflection.aio.ReflectionServicer(names)
    reflection_pb2_grpc.add_ServerReflectionServicer_to_server(servicer, server)
    v1 = grpc.stream_stream_rpc_method_handler(
        servicer.ServerReflectionInfo,
        request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
        response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString,
    )
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(REFLECTION_V1_SERVICE, {"ServerReflectionInfo": v1}),)
    )


def probe_bind(listen: str) -> None:
    """Bind `listen` with a plain socket first, so a busy or foreign address fails with the OS's
    reason in one line (gRPC's own failure logs two lines of C-core text and says no more)."""
    host, _, port = listen.rpartition(":")
    try:
        addresses = socket.getaddrinfo(host.strip("[]"), int(port), type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise ConfigurationError(f"cannot listen on {listen}: {exc.strerror}") from None
    for family, kind, proto, _, address in addresses:
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gRPC binds
            try:
                probe.bind(address)
            except OSError as exc:
                raise ConfigurationError(
                    f"cannot listen on {listen}: {exc.strerror}; choose another address with "
                    "--listen or FLEET_LISTEN"
                ) from None


def _bind(
    server: grpc.aio.Server, listen: str, credentials: grpc.ServerCredentials | None, *, shared: bool
) -> int:
    """The port bound for `listen`; a busy or foreign address is a one-line ConfigurationError.

    `shared` (several workers on one port through SO_REUSEPORT) skips the probe: the siblings
    hold the port already, and rightly.
    """
    check_listen(listen)
    if not shared:
        probe_bind(listen)
    try:
        if credentials is None:
            port = int(server.add_insecure_port(listen))
        else:
            port = int(server.add_secure_port(listen, credentials))
    except RuntimeError:  # grpc's "Failed to bind to address …", with no more detail to give
        port = 0
    if port == 0:
        raise ConfigurationError(
            f"cannot listen on {listen}: the port is in use (another fleet-server?) or the address "
            "is not one of this machine's; choose another with --listen or FLEET_LISTEN"
        )
    return port


# HTTP/2 keepalive and connection lifetime; docs/operations.md gives each value's reason.
KEEPALIVE_TIME_MS = 60_000
KEEPALIVE_TIMEOUT_MS = 20_000
MIN_CLIENT_PING_INTERVAL_MS = 10_000
MAX_CONNECTION_IDLE_MS = 5 * 60_000
MAX_CONNECTION_AGE_GRACE_MS = 10 * 60_000
MAX_STREAMS_PER_CONNECTION = 100


def channel_options(settings: Settings) -> list[tuple[str, int]]:
    """The gRPC core options of the server: message and metadata limits, keepalive, connection age."""
    return [
        ("grpc.max_receive_message_length", settings.max_message_bytes),
        ("grpc.max_send_message_length", max(settings.max_message_bytes, 4 * 1024 * 1024)),
        # The plain limit is soft (gRPC rejects a random share of calls above it); the absolute
        # one makes every call over the limit fail.
        ("grpc.max_metadata_size", settings.max_metadata_bytes),
        ("grpc.absolute_max_metadata_size", settings.max_metadata_bytes),
        # gRPC turns SO_REUSEPORT on by default; with one worker a busy port must be an error,
        # not a second server silently sharing it.
        ("grpc.so_reuseport", 1 if settings.workers > 1 else 0),
        # Ping each client every minute and drop the connection when no answer comes in 20 s: a
        # portal gone without a FIN (power cut, NAT timeout) gives its slots back within ~80 s,
        # also on a stream that carries no data (a Watch); without the last option gRPC stops
        # pinging after two pings without data.
        ("grpc.keepalive_time_ms", KEEPALIVE_TIME_MS),
        ("grpc.keepalive_timeout_ms", KEEPALIVE_TIMEOUT_MS),
        ("grpc.http2.max_pings_without_data", 0),
        # Clients may ping too (fleet-push every 60 s during a call), down to every 10 s, with or
        # without a call in progress; more often earns a GOAWAY (too_many_pings).
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_ping_interval_without_data_ms", MIN_CLIENT_PING_INTERVAL_MS),
        # A connection without calls for 5 minutes is closed; clients reconnect on their next call.
        ("grpc.max_connection_idle_ms", MAX_CONNECTION_IDLE_MS),
        # After about max_connection_age_s (gRPC adds ±10 % jitter) a connection is told to go
        # away: new calls open a new connection, which SO_REUSEPORT or the load balancer may
        # place elsewhere; calls in progress get 10 minutes, more than fleet-push's longest
        # deadline (a 600 s measurement stream), before the connection is closed under them.
        ("grpc.max_connection_age_ms", int(settings.max_connection_age_s * 1000)),
        ("grpc.max_connection_age_grace_ms", MAX_CONNECTION_AGE_GRACE_MS),
        # Streams one HTTP/2 connection may have open, so no one connection brings the process
        # to its ceiling; gRPC clients queue beyond it once they know it, and a stream opened
        # before that (or as another ends) is refused by the transport: UNAVAILABLE.
        ("grpc.max_concurrent_streams", MAX_STREAMS_PER_CONNECTION),
        # Bounded memory: BDP probing grows the flow-control windows with the measured
        # bandwidth-delay product, so on a fast link clients get to push far more than the
        # handlers have read. Measured with `python -m bench.memory` (8 customers streaming 4 MiB
        # batches on loopback): peak RSS 705 MB with it, 526 MB without (851 and 493 when their
        # streams share one connection). Without it a stream's window is the HTTP/2 default
        # (64 KiB) beyond the message its handler is reading.
        ("grpc.http2.bdp_probe", 0),
    ]


async def start_server(app: App, listen: str | None = None) -> RunningServer:
    """Build, bind and start the server for `app` (`listen` overrides the setting, e.g. port 0)."""
    settings = app.settings if listen is None else replace(app.settings, listen=listen)
    credentials = server_credentials(settings)
    auth = AuthInterceptor(
        app.tokens,
        app.admission,
        settings.stream_idle_s,
        refusals={PUSH_MEASUREMENTS: app.ingest.refusal},
    )
    server = grpc.aio.server(
        interceptors=[auth] if app.metrics is None else app.metrics.interceptors(auth, app.clock),
        options=channel_options(settings),
        # A last resort far above the budgets the interceptor keeps (check_settings holds it
        # there): it bounds what no budget sees yet — calls still being authenticated, refusals
        # on their way out. Each budget refuses its own kind long before this refuses anyone.
        maximum_concurrent_rpcs=settings.max_concurrent_rpcs,
    )
    ingest_service_pb2_grpc.add_FleetIngestServiceServicer_to_server(FleetIngestServicer(app), server)
    query_service_pb2_grpc.add_FleetQueryServiceServicer_to_server(FleetQueryServicer(app), server)
    admin_service_pb2_grpc.add_FleetAdminServiceServicer_to_server(FleetAdminServicer(app), server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    if settings.reflection:
        _enable_reflection(server)
    port = _bind(server, settings.listen, credentials, shared=settings.workers > 1)
    database_health = _DatabaseHealth.for_app(app)
    await database_health.update(health_servicer)
    await server.start()
    running = RunningServer(server, port, health_servicer, app, database_health)
    running._monitor = asyncio.create_task(database_health.watch(health_servicer, settings.health_poll_s))
    if settings.compress:
        running.compression = CompressionJob(
            app.db,
            app.clock,
            interval_s=settings.compress_interval_s,
            older_than=parse_duration(settings.compress_after, "--compress-after"),
            statement_timeout_s=settings.statement_timeout_s,
            observer=None if app.metrics is None else app.metrics.compression,
        ).start()
    if app.metrics is not None:
        running._metrics_sampler = asyncio.create_task(
            sampler.sample_forever(app.metrics, app.databases(), app.admission, app.token_cache)
        )
    return running


async def serve_until_signalled(app: App) -> None:
    """Serve until SIGTERM/SIGINT, then stop gracefully within the configured grace period."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in STOP_SIGNALS:  # before the port opens: no window in which a signal kills us
        loop.add_signal_handler(sig, stop.set)
    if stop_requested_early():
        _LOGGER.info("stop requested during start-up; not serving")
        return
    running = await start_server(app)
    _LOGGER.info(
        "fleet-server pid %d listening on %s (port %d, %s, reflection %s)",
        os.getpid(),
        app.settings.listen,
        running.port,
        _transport(app.settings),
        "on" if app.settings.reflection else "off",
    )
    serving = asyncio.create_task(running.server.wait_for_termination())
    waiter = asyncio.create_task(stop.wait())
    await asyncio.wait({serving, waiter}, return_when=asyncio.FIRST_COMPLETED)
    _LOGGER.info("shutting down (grace %.1fs)", app.settings.shutdown_grace_s)
    await running.stop()
    waiter.cancel()
    _LOGGER.info("stopped")


def _transport(settings: Settings) -> str:
    if settings.tls_cert is None:
        return "plaintext"
    return "mTLS" if settings.tls_client_ca else "TLS"


def serve(settings: Settings, *, expose_metrics: bool = True) -> None:
    """One serving process on an already-migrated `settings.database_url`, until signalled.

    With --metrics-listen this process serves its own `/metrics`, unless it is a worker
    (`expose_metrics=False`): then the supervisor serves every worker's metrics at once.
    """
    if not settings.database_url:
        raise ConfigurationError("serve needs a database URL")
    db = Database.from_url(
        settings.database_url,
        settings.db_pool_size,
        queue_timeout_s=settings.db_queue_timeout_s,
        statement_timeout_s=settings.statement_timeout_s,
    )
    reader = (
        Database.from_url(
            settings.query_database_url,
            settings.db_pool_size,
            queue_timeout_s=settings.db_queue_timeout_s,
            statement_timeout_s=settings.statement_timeout_s,
        )
        if settings.query_database_url
        else None
    )
    app = App(settings=settings, db=db, reader=reader)
    endpoint: MetricsEndpoint | None = None
    try:
        if app.metrics is not None and settings.metrics_listen and expose_metrics:
            endpoint = serve_metrics(with_process_collectors(app.metrics.registry), settings.metrics_listen)
            _LOGGER.info("metrics at http://%s/metrics", settings.metrics_listen)
        collector.tune_for_serving()
        asyncio.run(serve_until_signalled(app))
    finally:
        if endpoint is not None:
            endpoint.close()
        app.close()
