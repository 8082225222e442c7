"""Request bytes for the fuzzer: messages built from the descriptors, valid seeds, and mutations of both.

Four ways to make one request message, all driven by one seeded `random.Random`:

- `structured`: every field of the descriptor filled (or left unset) with values chosen from a
  dictionary of interesting ones per type — integer edges, doubles past the value bound, NaN,
  Timestamps and Durations outside their ranges, names past the length limits, the fixture
  customers' codes, metric names and time zones good and bad — nested messages recursively;
- `seed`: a valid request for the method (real codes, recent times, consistent reference data),
  so calls also reach the code behind validation;
- `mutated seed`: a seed with one field path replaced by an interesting value;
- `bytes`: a seed's (or a structured message's) encoding mutated byte-wise — flips, inserts,
  deletions, truncation, splices, bad UTF-8 spliced in, a length prefix enlarged.

Methods are discovered from the services' descriptors, so an RPC added later is fuzzed too.
"""

from __future__ import annotations

import math
import random
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from fleet.v1 import admin_service_pb2, ingest_service_pb2, query_service_pb2, resources_pb2
from google.protobuf import duration_pb2, message_factory, timestamp_pb2
from google.protobuf.descriptor import FieldDescriptor, MethodDescriptor
from google.protobuf.message import Message

SERVICES = (
    (ingest_service_pb2, "FleetIngestService", "customer"),
    (admin_service_pb2, "FleetAdminService", "admin"),
    (query_service_pb2, "FleetQueryService", "admin"),
)


@dataclass(frozen=True)
class Method:
    """One RPC as the fuzzer calls it."""

    descriptor: MethodDescriptor
    wants: str  # the kind of token its service requires: "customer" or "admin"

    @property
    def path(self) -> str:
        return f"/{self.descriptor.containing_service.full_name}/{self.descriptor.name}"

    @property
    def name(self) -> str:
        return str(self.descriptor.name)

    @property
    def client_streaming(self) -> bool:
        return bool(self.descriptor.client_streaming)

    @property
    def server_streaming(self) -> bool:
        return bool(self.descriptor.server_streaming)

    def request_class(self) -> type[Message]:
        return message_factory.GetMessageClass(self.descriptor.input_type)


def methods() -> list[Method]:
    """Every RPC of the three fleet services, from their descriptors."""
    return [
        Method(method, wants)
        for module, service, wants in SERVICES
        for method in module.DESCRIPTOR.services_by_name[service].methods
    ]


# -- interesting values ---------------------------------------------------------------------------

INT64_EDGES = [0, 1, -1, 2, 5, 10, 2**31 - 1, -(2**31), 2**31, 2**53 + 1, 2**63 - 1, -(2**63)]
INT32_EDGES = [0, 1, -1, 2, 5, 127, 128, 2**31 - 1, -(2**31)]
UINT64_EDGES = [0, 1, 2, 2**32 - 1, 2**32, 2**63, 2**64 - 1]
UINT32_EDGES = [0, 1, 2, 2**31, 2**32 - 1]
DOUBLES = [
    0.0,
    -0.0,
    1.0,
    -1.5,
    0.1,
    1e15,
    -1e15,
    math.nextafter(1e15, math.inf),
    1e16,
    1e300,
    1e308,
    -1e308,
    math.inf,
    -math.inf,
    math.nan,
    5e-324,
    2.2250738585072014e-308,
]
TIMEZONES = ["", "UTC", "Africa/Johannesburg", "Europe/Amsterdam", "Asia/Kathmandu", "Mars/Base", "right/UTC"]
METRICS = ["energy_kwh", "power_w", "x" * 63, "x" * 64, "Energy", "", "1a", "a-b", "é"]
DECIMALS = [
    "3.75",
    "0",
    "-1",
    "1e5",
    "NaN",
    "Infinity",
    "",
    "12345678901234567890",
    "0.00000000001",
    "1.2.3",
    "٣",
]
CLOCK_TIMES = ["00:00", "17:00", "23:59", "24:00", "25:00", "7:00", "12:60", "", "ab:cd"]
CURRENCIES = ["ZAR", "EUR", "zar", "EURO", "", "€€€"]
_NOW_SECONDS = int(datetime.now(UTC).timestamp())
TIMESTAMP_SECONDS = [
    _NOW_SECONDS - 3600,
    _NOW_SECONDS - 86_400 * 30,
    _NOW_SECONDS + 86_400 * 2,
    946_684_800,  # 2000-01-01
    946_684_799,
    0,
    -1,
    -62_135_596_800,
    -62_135_596_801,
    253_402_300_799,
    253_402_300_800,
    2**62,
    -(2**62),
]
NANOS = [0, 1, 999_999_999, 1_000_000_000, -1, 2**31 - 1, -(2**31)]
DURATION_SECONDS = [0, 1, 60, 86_400, 30 * 86_400, 31 * 86_400, -1, 315_576_000_000, 315_576_000_001, 10**15]


def _text(rng: random.Random) -> str:
    choice = rng.randrange(8)
    if choice == 0:
        return ""
    if choice == 1:
        return "x" * rng.choice([255, 256, 257, 1000, 5000])
    if choice == 2:
        return "".join(chr(rng.randrange(0x20, 0x2FFF)) for _ in range(rng.randrange(1, 20)))
    if choice == 3:
        return rng.choice(["\x00", " ", "\t\n", "'; DROP TABLE fleet.customers; --", "${jndi:x}", "%s%n"])
    return "".join(rng.choice("abcdefghijklmnopqrstuvwxyz _-") for _ in range(rng.randrange(1, 24)))


class Values:
    """Interesting values, with the fixture customers' codes so calls also hit real customers."""

    def __init__(self, rng: random.Random, codes: Callable[[], Sequence[str]]) -> None:
        self.rng = rng
        self.codes = codes

    def code(self) -> str:
        rng = self.rng
        if rng.random() < 0.6 and self.codes():
            return rng.choice(list(self.codes()))
        return rng.choice(
            ["", "A", "acme", "NEW" + str(rng.randrange(1000)), "X" * 33, "FUZZ-" + str(rng.randrange(50))]
        )

    def string(self, name: str) -> str:
        rng = self.rng
        if rng.random() < 0.25:
            return _text(rng)
        if name in ("code", "codes"):
            return self.code()
        if name == "metric":
            return rng.choice(METRICS)
        if name == "timezone":
            return rng.choice(TIMEZONES)
        if name in ("default_rate", "fixed_charge", "vat_percent", "rate"):
            return rng.choice(DECIMALS)
        if name in ("start_time", "end_time"):
            return rng.choice(CLOCK_TIMES)
        if name == "currency":
            return rng.choice(CURRENCIES)
        if name == "page_token":
            return rng.choice(["", "eyJ2IjoxLCJhZnRlciI6IkxJVkUifQ", "!!", "eyJ2IjoyfQ", "x" * 300])
        return _text(rng)

    def integer(self, field: Any) -> int:
        rng = self.rng
        kind = field.type
        if kind in (FieldDescriptor.TYPE_UINT64, FieldDescriptor.TYPE_FIXED64):
            return rng.choice(UINT64_EDGES + list(range(1, 6)))
        if kind in (FieldDescriptor.TYPE_UINT32, FieldDescriptor.TYPE_FIXED32):
            return rng.choice(UINT32_EDGES + list(range(1, 6)))
        if kind in (FieldDescriptor.TYPE_INT32, FieldDescriptor.TYPE_SINT32, FieldDescriptor.TYPE_SFIXED32):
            if field.name == "days_of_week":
                return rng.choice([0, 1, 31, 96, 127, 128, -1])
            return rng.choice(INT32_EDGES + list(range(1, 6)))
        return rng.choice(INT64_EDGES + list(range(1, 6)) * 3)


# -- structured messages --------------------------------------------------------------------------


def _timestamp(rng: random.Random) -> timestamp_pb2.Timestamp:
    return timestamp_pb2.Timestamp(seconds=rng.choice(TIMESTAMP_SECONDS), nanos=rng.choice(NANOS))


def _duration(rng: random.Random) -> duration_pb2.Duration:
    seconds = rng.choice(DURATION_SECONDS)
    nanos = rng.choice([0, 0, 1, -1, 999_999_999, 2_147_483_647])
    return duration_pb2.Duration(seconds=seconds, nanos=nanos)


def fill(message: Message, values: Values, depth: int = 0) -> Message:
    """Set (or leave unset) every field of `message` with interesting values."""
    rng = values.rng
    for field in message.DESCRIPTOR.fields:
        if rng.random() < 0.2:
            continue  # unset
        repeated = field.is_repeated
        count = rng.choice([0, 1, 1, 2, 3, 5, 20]) if repeated else 1
        if repeated and depth == 0 and rng.random() < 0.03:
            count = rng.choice([200, 1000])
        for _ in range(count):
            _set(message, field, values, depth, repeated)
    return message


def _set(message: Message, field: Any, values: Values, depth: int, repeated: bool) -> None:
    """Add (repeated) or set one value of `field`, a FieldDescriptor (upb's or the pure one)."""
    rng = values.rng
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        target = getattr(message, field.name).add() if repeated else getattr(message, field.name)
        name = target.DESCRIPTOR.full_name
        if name == "google.protobuf.Timestamp":
            target.CopyFrom(_timestamp(rng))
        elif name == "google.protobuf.Duration":
            target.CopyFrom(_duration(rng))
        elif depth < 3:
            fill(target, values, depth + 1)
        else:
            target.SetInParent()
        return
    value: Any
    if field.type == FieldDescriptor.TYPE_STRING:
        value = values.string(field.name)
    elif field.type == FieldDescriptor.TYPE_BYTES:
        value = rng.randbytes(rng.randrange(0, 16))
    elif field.type == FieldDescriptor.TYPE_BOOL:
        value = rng.random() < 0.5
    elif field.type in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        value = rng.choice(DOUBLES) if rng.random() < 0.7 else rng.uniform(-1e6, 1e6)
        if field.type == FieldDescriptor.TYPE_FLOAT and math.isfinite(value) and abs(value) > 3e38:
            value = math.inf
    elif field.type == FieldDescriptor.TYPE_ENUM:
        numbers = [v.number for v in field.enum_type.values] if field.enum_type is not None else [0]
        value = rng.choice([*numbers, 99, -1, 2**31 - 1])
    else:
        value = values.integer(field)
    if repeated:
        getattr(message, field.name).append(value)
    else:
        setattr(message, field.name, value)


# -- valid seeds ---------------------------------------------------------------------------------


def _ts(moment: datetime) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(moment)
    return stamp


def _site(i: int) -> resources_pb2.Site:
    return resources_pb2.Site(
        id=i, name=f"Site {i}", timezone="Africa/Johannesburg", municipality_id=5, tariff_id=10
    )


def _tariff() -> resources_pb2.Tariff:
    return resources_pb2.Tariff(
        id=10,
        municipality_id=5,
        name="Domestic TOU",
        is_active=True,
        effective_from=_ts(datetime(2024, 1, 1, tzinfo=UTC)),
        default_rate="2.10",
        fixed_charge="250.00",
        vat_percent="15",
        currency="ZAR",
        periods=[
            resources_pb2.TariffPeriod(
                id=1, name="Peak", days_of_week=31, start_time="17:00", end_time="20:00", rate="3.75"
            )
        ],
    )


def seed_requests(method: Method, values: Values) -> list[Message]:
    """A valid request (a stream of them for client streaming) for `method`."""
    rng = values.rng
    now = datetime.now(UTC).replace(microsecond=0)
    start, end = now - timedelta(days=rng.choice([1, 7, 31])), now + timedelta(hours=1)
    code = values.code()
    name = method.name
    if name == "PushSites":
        return [ingest_service_pb2.PushSitesRequest(sites=[_site(i) for i in range(1, rng.randrange(2, 5))])]
    if name == "PushDevices":
        devices = [
            resources_pb2.Device(id=i, site_id=1, name=f"Meter {i}", serial_number=f"SN{i}") for i in (1, 2)
        ]
        return [ingest_service_pb2.PushDevicesRequest(devices=devices)]
    if name == "PushMunicipalities":
        return [
            ingest_service_pb2.PushMunicipalitiesRequest(
                municipalities=[resources_pb2.Municipality(id=5, name="City")]
            )
        ]
    if name == "PushTariffs":
        return [ingest_service_pb2.PushTariffsRequest(tariffs=[_tariff()])]
    if name == "PushMeasurements":
        batches: list[Message] = []
        for batch_id in range(1, rng.randrange(2, 4)):
            base = now - timedelta(hours=rng.randrange(1, 72))
            rows = [
                resources_pb2.Measurement(
                    device_id=rng.choice([1, 2, 3]),
                    metric=rng.choice(["energy_kwh", "power_w"]),
                    time=_ts(base + timedelta(minutes=15 * i)),
                    value=rng.uniform(0, 10),
                    received_at=_ts(now - timedelta(minutes=5)),
                )
                for i in range(rng.randrange(1, 8))
            ]
            batches.append(ingest_service_pb2.PushMeasurementsRequest(batch_id=batch_id, measurements=rows))
        return batches
    if name == "CreateCustomer":
        return [admin_service_pb2.CreateCustomerRequest(code=f"FUZZ-{rng.randrange(50)}", name="Fuzzed")]
    if name == "ListCustomers":
        return [admin_service_pb2.ListCustomersRequest(page_size=rng.choice([0, 1, 2, 1000, 5000]))]
    if name == "RotateCustomerToken":
        request = admin_service_pb2.RotateCustomerTokenRequest(code=code)
        if rng.random() < 0.7:
            request.grace_period.CopyFrom(duration_pb2.Duration(seconds=rng.choice([0, 60, 3600])))
        return [request]
    if name in (
        "ActivateCustomer",
        "DeactivateCustomer",
        "DeleteCustomer",
        "GetCustomer",
        "GetCustomerDetail",
    ):
        return [method.request_class()(code=code)]
    if name == "QueryMeasurements":
        return [
            query_service_pb2.QueryMeasurementsRequest(
                code=code,
                metric="energy_kwh",
                start=_ts(start),
                end=_ts(end),
                bucket=rng.choice(["BUCKET_RAW", "BUCKET_HOUR", "BUCKET_DAY"]),
            )
        ]
    if name == "SummarizeFleet":
        return [query_service_pb2.SummarizeFleetRequest(metric="energy_kwh", start=_ts(start), end=_ts(end))]
    if name == "ComputeCosts":
        codes = [] if rng.random() < 0.5 else [code]
        return [query_service_pb2.ComputeCostsRequest(codes=codes, start=_ts(start), end=_ts(end))]
    # An RPC without a seed of its own (a list added later, such as ListSites): its customer code
    # and a small page when it has such fields, everything else left at its default.
    plain: Message = method.request_class()()
    fields = plain.DESCRIPTOR.fields_by_name
    if "code" in fields:
        setattr(plain, "code", code)  # noqa: B010 - the field is only known at run time
    if "page_size" in fields:
        setattr(plain, "page_size", rng.choice([0, 1, 2, 50]))  # noqa: B010
    return [plain if {"code", "page_size"} & set(fields) else fill(plain, values)]


def mutate_field(message: Message, values: Values) -> Message:
    """`message` with one field (at any depth) set to an interesting value or cleared."""
    rng = values.rng
    target = message
    for _ in range(4):
        set_fields = [f for f, _ in target.ListFields()]
        if not set_fields:
            break
        field = rng.choice(set_fields)
        if field.type == FieldDescriptor.TYPE_MESSAGE and rng.random() < 0.6:
            child = getattr(target, field.name)
            if field.is_repeated:
                if not len(child):
                    break
                target = child[rng.randrange(len(child))]
            else:
                target = child
            continue
        target.ClearField(field.name)
        if rng.random() < 0.85:
            _set(target, field, values, 2, field.is_repeated)
        return message
    spare: list[Any] = list(target.DESCRIPTOR.fields)
    if spare:
        chosen = rng.choice(spare)
        _set(target, chosen, values, 2, chosen.is_repeated)
    return message


# -- bytes ----------------------------------------------------------------------------------------


def mutate_bytes(data: bytes, rng: random.Random) -> bytes:
    """Byte-level mutations of an encoding: the parser, not the validator, is the target."""
    buffer = bytearray(data)
    for _ in range(rng.choice([1, 1, 2, 4])):
        choice = rng.randrange(8)
        position = rng.randrange(len(buffer) + 1)
        if choice == 0 and buffer:  # flip a bit
            index = rng.randrange(len(buffer))
            buffer[index] ^= 1 << rng.randrange(8)
        elif choice == 1:  # insert random bytes
            buffer[position:position] = rng.randbytes(rng.randrange(1, 8))
        elif choice == 2 and buffer:  # delete a slice
            del buffer[position : position + rng.randrange(1, 8)]
        elif choice == 3 and buffer:  # truncate
            del buffer[rng.randrange(len(buffer)) :]
        elif choice == 4:  # bad UTF-8 as a string-shaped field (field 1..15, wire type 2)
            bad = rng.choice([b"\xc3\x28\xff", b"\xff\xfe", b"\xed\xa0\x80", b"\xc0\xaf"])
            buffer[position:position] = bytes([(rng.randrange(1, 16) << 3) | 2, len(bad)]) + bad
        elif choice == 5:  # an absurd length prefix
            buffer[position:position] = bytes([(rng.randrange(1, 16) << 3) | 2]) + b"\xff\xff\xff\xff\x0f"
        elif choice == 6:  # a varint that never ends, or a fixed64 cut short
            buffer[position:position] = rng.choice([b"\x08" + b"\xff" * 11, b"\x09\x01\x02", b"\x0d\x01"])
        elif buffer:  # overwrite with an interesting double's bytes
            index = rng.randrange(len(buffer))
            buffer[index : index + 8] = struct.pack("<d", rng.choice(DOUBLES))
    return bytes(buffer)


def request_payloads(method: Method, values: Values) -> tuple[str, list[bytes]]:
    """The bytes of one call's request message(s), and how they were made."""
    rng = values.rng
    mode = rng.choices(
        ["structured", "seed", "mutated-seed", "bytes", "garbage"], weights=[30, 20, 25, 20, 5]
    )[0]
    seeds = seed_requests(method, values) if mode in ("seed", "mutated-seed", "bytes") else []
    if not method.client_streaming:
        count = 1
    elif seeds and rng.random() < 0.7:
        count = len(seeds)  # the seed's own stream (a measurement stream's batches in order)
    else:
        count = rng.choice([0, 1, 1, 2, 3, 5])
    payloads: list[bytes] = []
    for index in range(count):
        if mode == "structured":
            payloads.append(fill(method.request_class()(), values).SerializeToString())
        elif mode == "garbage":
            payloads.append(rng.randbytes(rng.randrange(0, 64)))
        else:
            seed = seeds[index % len(seeds)]
            if mode == "mutated-seed" and rng.random() < 0.7:
                seed = mutate_field(seed, values)
            data = seed.SerializeToString()
            if mode == "bytes" and rng.random() < 0.7:
                data = mutate_bytes(data, rng)
            payloads.append(data)
    return mode, payloads
