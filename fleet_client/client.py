"""FleetClient: the typed wrapper over the generated ingest stubs that the pusher talks through.

It owns the channel (target, TLS or mTLS, keepalive, message limits), adds the bearer token to
every call, applies deadlines, chunks reference snapshots into messages under the size limit,
and turns every `grpc.RpcError` into a typed `fleet_client.errors.FleetRpcError`. The channel is
created lazily through an injectable factory, so a disabled pusher provably opens no
connection, and it is dropped after UNAVAILABLE or a missed deadline so the next attempt
dials afresh instead of waiting out gRPC's own reconnect backoff.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import queue
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, TypeVar

import grpc
from fleet.v1 import ingest_service_pb2 as pb
from fleet.v1 import ingest_service_pb2_grpc
from fleet.v1 import resources_pb2 as res

from fleet_client.errors import (
    ConfigurationError,
    DeadlineExceeded,
    FleetRpcError,
    ProtocolError,
    Unavailable,
    from_rpc_error,
)

_LOGGER = logging.getLogger(__name__)

USER_AGENT = "fleet-push/0.1"
CHUNK_BYTES = 1024 * 1024
"""A snapshot message is closed at this many bytes, well under the server's 4 MiB default limit."""

ChannelOptions = Sequence[tuple[str, Any]]
ChannelFactory = Callable[[str, grpc.ChannelCredentials | None, ChannelOptions], grpc.Channel]
M = TypeVar("M")
R = TypeVar("R")


def default_channel_factory(
    target: str, credentials: grpc.ChannelCredentials | None, options: ChannelOptions
) -> grpc.Channel:
    """A real gRPC channel: TLS when credentials are given, plaintext otherwise."""
    if credentials is None:
        return grpc.insecure_channel(target, options=list(options))
    return grpc.secure_channel(target, credentials, options=list(options))


def token_fingerprint(token: str) -> str:
    """A short, non-reversible name for a token: enough to notice it changed, useless to an attacker."""
    return "sha256:" + hashlib.sha256(token.encode("utf-8")).hexdigest()[:12]


def is_loopback_target(target: str) -> bool:
    """True when `host:port` names this machine only, where plaintext cannot be sniffed."""
    host = target.rsplit(":", 1)[0].strip("[]") if ":" in target else target
    if host.startswith(("unix:", "unix-abstract:")):
        return True
    if host in ("localhost", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class TlsOptions:
    """How to reach a TLS server: `ca_file` to trust (system roots when unset), and a client
    certificate + key for mTLS. `enabled` with no files means TLS against the system roots."""

    enabled: bool = False
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    server_name: str | None = None

    @property
    def active(self) -> bool:
        return self.enabled or self.ca_file is not None or self.cert_file is not None

    def credentials(self) -> grpc.ChannelCredentials | None:
        """Channel credentials, or None for plaintext; reads the PEM files now so errors surface early."""
        if not self.active:
            return None
        if (self.cert_file is None) != (self.key_file is None):
            raise ConfigurationError("FLEET_TLS_CERT and FLEET_TLS_KEY go together (mTLS needs both)")
        return grpc.ssl_channel_credentials(
            root_certificates=_read(self.ca_file, "FLEET_TLS_CA"),
            private_key=_read(self.key_file, "FLEET_TLS_KEY"),
            certificate_chain=_read(self.cert_file, "FLEET_TLS_CERT"),
        )


def _read(path: Path | None, setting: str) -> bytes | None:
    if path is None:
        return None
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ConfigurationError(f"{setting}: cannot read {path}: {exc.strerror}") from exc


@dataclass(frozen=True)
class CallOptions:
    """Deadlines and channel tuning. `stream_deadline_s` bounds one measurement stream (one tick)."""

    deadline_s: float = 60.0
    stream_deadline_s: float = 600.0
    keepalive_s: float = 60.0
    keepalive_timeout_s: float = 20.0
    max_message_bytes: int = 4 * 1024 * 1024


class MeasurementSink(Protocol):
    """One open measurement stream, as the pusher uses it."""

    def send(self, request: pb.PushMeasurementsRequest) -> None: ...
    def next_ack(self) -> pb.PushMeasurementsResponse: ...
    def close(self) -> None: ...
    def cancel(self) -> None: ...
    def __enter__(self) -> MeasurementSink: ...
    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...


class IngestClient(Protocol):
    """What the pusher needs from a client; `FleetClient` is the real one."""

    @property
    def token_fingerprint(self) -> str: ...
    def set_token(self, token: str) -> None: ...
    def push_sites(self, sites: Sequence[res.Site]) -> pb.PushSitesResponse: ...
    def push_devices(self, devices: Sequence[res.Device]) -> pb.PushDevicesResponse: ...
    def push_municipalities(
        self, municipalities: Sequence[res.Municipality]
    ) -> pb.PushMunicipalitiesResponse: ...
    def push_tariffs(self, tariffs: Sequence[res.Tariff]) -> pb.PushTariffsResponse: ...
    def measurement_stream(self) -> MeasurementSink: ...


class FleetClient:
    """A customer's connection to `FleetIngestService`.

    Not thread-safe: one pusher drives one client. `token` may be replaced (`set_token`) without
    rebuilding anything, which is how a rotated token is picked up.
    """

    def __init__(
        self,
        target: str,
        token: str,
        *,
        tls: TlsOptions | None = None,
        options: CallOptions | None = None,
        insecure: bool = False,
        channel_factory: ChannelFactory | None = None,
    ) -> None:
        if not target:
            raise ConfigurationError("FLEET_SERVER is empty: give the server's host:port")
        if not token:
            raise ConfigurationError("FLEET_TOKEN is empty: give the customer token issued by the operator")
        self.target = target
        self._token = token.strip()
        self.tls = tls or TlsOptions()
        self.options = options or CallOptions()
        if not self.tls.active and not insecure and not is_loopback_target(target):
            raise ConfigurationError(
                f"refusing to send the token in plaintext to {target}: set FLEET_TLS_CA (or FLEET_TLS=true) "
                "for TLS, or FLEET_INSECURE=true to allow plaintext"
            )
        self._credentials = self.tls.credentials()
        self._factory = channel_factory or default_channel_factory
        self._channel: grpc.Channel | None = None
        self._stub: ingest_service_pb2_grpc.FleetIngestServiceStub | None = None

    # -- token ---------------------------------------------------------------------------------

    @property
    def token_fingerprint(self) -> str:
        return token_fingerprint(self._token)

    def set_token(self, token: str) -> None:
        """Use `token` from the next call on (a rotated token, or a fix after UNAUTHENTICATED)."""
        self._token = token.strip()

    @property
    def _metadata(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self._token}"),)

    # -- channel -------------------------------------------------------------------------------

    def _channel_options(self) -> list[tuple[str, Any]]:
        opts = self.options
        channel_options: list[tuple[str, Any]] = [
            ("grpc.primary_user_agent", USER_AGENT),
            ("grpc.keepalive_time_ms", int(opts.keepalive_s * 1000)),
            ("grpc.keepalive_timeout_ms", int(opts.keepalive_timeout_s * 1000)),
            ("grpc.max_send_message_length", opts.max_message_bytes),
            ("grpc.max_receive_message_length", opts.max_message_bytes),
            # Our own backoff paces retries; gRPC's reconnect backoff should not add minutes to it.
            ("grpc.initial_reconnect_backoff_ms", 1000),
            ("grpc.max_reconnect_backoff_ms", 10_000),
        ]
        if self.tls.server_name:
            channel_options.append(("grpc.ssl_target_name_override", self.tls.server_name))
        return channel_options

    @property
    def stub(self) -> ingest_service_pb2_grpc.FleetIngestServiceStub:
        if self._stub is None:
            _LOGGER.debug(
                "opening channel to %s (%s)", self.target, "TLS" if self._credentials else "plaintext"
            )
            self._channel = self._factory(self.target, self._credentials, self._channel_options())
            self._stub = ingest_service_pb2_grpc.FleetIngestServiceStub(self._channel)
        return self._stub

    def _failed(self, exc: grpc.RpcError) -> FleetRpcError:
        """The typed error for a failed call; a lost server also drops the channel, so the next
        attempt dials afresh instead of waiting out gRPC's reconnect backoff."""
        error = from_rpc_error(exc)
        if isinstance(error, Unavailable | DeadlineExceeded):
            self.reset()
        return error

    def reset(self) -> None:
        """Drop the channel; the next call dials a fresh one (no wait for gRPC's reconnect backoff)."""
        if self._channel is not None:
            self._channel.close()
        self._channel = None
        self._stub = None

    def close(self) -> None:
        self.reset()

    def __enter__(self) -> FleetClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- reference data ------------------------------------------------------------------------

    def _snapshot(self, method: Callable[..., R], requests: Iterator[Any]) -> R:
        try:
            return method(requests, metadata=self._metadata, timeout=self.options.deadline_s)
        except grpc.RpcError as exc:
            raise self._failed(exc) from None

    def push_sites(self, sites: Sequence[res.Site], chunk_size: int = 1000) -> pb.PushSitesResponse:
        """Replace the customer's sites with `sites` (a complete snapshot)."""
        chunks = _chunks(sites, chunk_size)
        response: pb.PushSitesResponse = self._snapshot(
            self.stub.PushSites, (pb.PushSitesRequest(sites=c) for c in chunks)
        )
        return response

    def push_devices(self, devices: Sequence[res.Device], chunk_size: int = 1000) -> pb.PushDevicesResponse:
        """Replace the customer's devices with `devices` (a complete snapshot)."""
        chunks = _chunks(devices, chunk_size)
        response: pb.PushDevicesResponse = self._snapshot(
            self.stub.PushDevices, (pb.PushDevicesRequest(devices=c) for c in chunks)
        )
        return response

    def push_municipalities(
        self, municipalities: Sequence[res.Municipality], chunk_size: int = 1000
    ) -> pb.PushMunicipalitiesResponse:
        """Replace the customer's municipalities with `municipalities` (a complete snapshot)."""
        chunks = _chunks(municipalities, chunk_size)
        response: pb.PushMunicipalitiesResponse = self._snapshot(
            self.stub.PushMunicipalities,
            (pb.PushMunicipalitiesRequest(municipalities=c) for c in chunks),
        )
        return response

    def push_tariffs(self, tariffs: Sequence[res.Tariff], chunk_size: int = 200) -> pb.PushTariffsResponse:
        """Replace the customer's tariffs, each with its complete period set."""
        chunks = _chunks(tariffs, chunk_size)
        response: pb.PushTariffsResponse = self._snapshot(
            self.stub.PushTariffs, (pb.PushTariffsRequest(tariffs=c) for c in chunks)
        )
        return response

    # -- measurements --------------------------------------------------------------------------

    def measurement_stream(self) -> MeasurementStream:
        """Open one bidirectional measurement stream (one per tick); use it as a context manager."""
        try:
            return MeasurementStream(self.stub, self._metadata, self.options.stream_deadline_s, self)
        except grpc.RpcError as exc:  # pragma: no cover - the call object is created without I/O
            raise self._failed(exc) from None


def _chunks(items: Sequence[M], chunk_size: int) -> Iterator[list[M]]:
    """Split a snapshot into messages by count and by bytes; an empty snapshot is one empty message.

    The empty message matters: an empty snapshot is meaningful (it deletes the customer's rows of
    that kind), and some servers treat a stream without messages as a mistake.
    """
    chunk: list[M] = []
    size = 0
    for item in items:
        item_size = item.ByteSize() if hasattr(item, "ByteSize") else 0
        if chunk and (len(chunk) >= chunk_size or size + item_size > CHUNK_BYTES):
            yield chunk
            chunk, size = [], 0
        chunk.append(item)
        size += item_size
    yield chunk


_END = object()


class MeasurementStream:
    """One `PushMeasurements` call: `send` batches, read `next_ack` in order, `close` when done.

    gRPC's sync API consumes the request iterator on its own thread; batches are handed over
    through a queue so the caller's thread alone touches the portal and the push state. The
    caller bounds how many batches are unacknowledged, so the queue stays small.
    """

    def __init__(
        self,
        stub: ingest_service_pb2_grpc.FleetIngestServiceStub,
        metadata: tuple[tuple[str, str], ...],
        deadline_s: float,
        owner: FleetClient,
    ) -> None:
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._owner = owner
        self._ended = False
        self._responses: Any = stub.PushMeasurements(self._requests(), metadata=metadata, timeout=deadline_s)

    def _requests(self) -> Iterator[pb.PushMeasurementsRequest]:
        while True:
            item = self._queue.get()
            if item is _END:
                return
            assert isinstance(item, pb.PushMeasurementsRequest)
            yield item

    def send(self, request: pb.PushMeasurementsRequest) -> None:
        self._queue.put(request)

    def next_ack(self) -> pb.PushMeasurementsResponse:
        """The next acknowledgement; raises the typed error if the stream failed."""
        try:
            response: pb.PushMeasurementsResponse = next(self._responses)
            return response
        except StopIteration:
            raise ProtocolError(
                "the server ended the measurement stream before acknowledging every batch"
            ) from None
        except grpc.RpcError as exc:
            raise self._owner._failed(exc) from None

    def _end_requests(self) -> None:
        if not self._ended:
            self._ended = True
            self._queue.put(_END)

    def close(self) -> None:
        """Half-close and wait for the server to end the call; an extra ack is a protocol error."""
        self._end_requests()
        try:
            for extra in self._responses:
                raise ProtocolError(f"unexpected acknowledgement for batch {extra.batch_id}")
        except grpc.RpcError as exc:
            raise self._owner._failed(exc) from None

    def cancel(self) -> None:
        """Abandon the call (unacknowledged batches are resent by the next tick)."""
        self._end_requests()
        self._responses.cancel()

    def __enter__(self) -> MeasurementStream:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is not None:
            self.cancel()
        else:
            self.close()
