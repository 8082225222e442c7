"""The fuzz run: every RPC, every auth state, generated and mutated requests, and the invariants.

One client thread calls a real server, one call at a time, for a set time, with a seeded RNG:
the same seed makes the same calls in the same order (how many fit in the time depends on the
machine). Per call it records the status; an INTERNAL or UNKNOWN is a violation, as is a call
the harness itself could not make sense of. Around the run it samples the server's RSS and
checks that it is alive and SERVING. At the end it checks the database against a ledger of
what the *accepted* calls wrote — customers (created, erased, active or not), every customer's
reference ids from its last accepted snapshot, and its readings from acknowledged batches (first
write wins) — so a refused call that wrote anything shows up, whatever it wrote; and it checks
that every hourly rollup agrees with the rows it summarises.
"""

from __future__ import annotations

import collections
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import grpc
from fleet.v1 import admin_service_pb2, ingest_service_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from sqlalchemy import Engine, text

from fleet_server.clock import SystemClock
from fleet_server.db.session import Database
from fleet_server.domain.admin_tokens import create_admin_token, revoke_admin_token
from fleet_server.domain.customers import create_customer, rotate_token, set_active
from fleet_server.domain.tokens import TokenKind, mint
from tests.fuzz.generate import Method, Values, methods, request_payloads

VIOLATING = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN}
_PARENT_FIELDS = {"devices": "site_id", "tariffs": "municipality_id"}
_CASCADES = {"devices": "sites", "tariffs": "municipalities"}
_CUSTOMER_CHANGES = ("ActivateCustomer", "DeactivateCustomer", "DeleteCustomer", "RotateCustomerToken")
CALL_TIMEOUT_S = 30.0
# The customers whose tokens the fuzzer mostly pushes with: healed (re-created, re-activated,
# their new token taken) whenever a fuzzed admin call takes them away, so depth is never lost.
KEEPERS = ("LIVE", "LIVE2")


@dataclass
class Incarnation:
    """One life of a customer code (erasure ends it; a re-created code is a new one), and what
    accepted calls wrote for it."""

    code: str
    active: bool = True
    alive: bool = True
    # Per reference resource, id -> parent id (a device's site, a tariff's municipality; else None).
    snapshots: dict[str, dict[int, int | None]] = field(default_factory=dict)
    readings: dict[tuple[int, str, int], float] = field(default_factory=dict)


@dataclass
class Token:
    label: str
    value: str
    kind: str  # "customer" or "admin"
    owner: Incarnation | None = None


@dataclass
class Violation:
    what: str
    method: str
    auth: str
    mode: str
    detail: str
    payload: str = ""

    def __str__(self) -> str:
        return f"{self.what}: {self.method} auth={self.auth} mode={self.mode}: {self.detail} {self.payload}"


@dataclass
class Report:
    calls: int = 0
    statuses: collections.Counter[str] = field(default_factory=collections.Counter)
    by_method: dict[str, collections.Counter[str]] = field(
        default_factory=lambda: collections.defaultdict(collections.Counter)
    )
    by_auth: dict[str, collections.Counter[str]] = field(
        default_factory=lambda: collections.defaultdict(collections.Counter)
    )
    violations: list[Violation] = field(default_factory=list)
    rss_start_mb: float | None = None
    rss_peak_mb: float | None = None
    seconds: float = 0.0
    database_checks: list[str] = field(default_factory=list)

    def table(self) -> str:
        """Calls per status (and per method), as printed at the end of a run."""
        rate = self.calls / max(self.seconds, 1e-9)
        lines = [f"fuzz: {self.calls:,} calls in {self.seconds:.0f} s ({rate:,.0f}/s)"]
        lines.append(f"{'status':<22}{'calls':>9}")
        for status, count in sorted(self.statuses.items(), key=lambda item: -item[1]):
            lines.append(f"{status:<22}{count:>9,}")
        lines.append("")
        statuses = sorted(self.statuses)
        header = f"{'method':<22}" + "".join(f"{s[:9]:>10}" for s in statuses)
        lines.append(header)
        for method in sorted(self.by_method):
            counts = self.by_method[method]
            lines.append(f"{method:<22}" + "".join(f"{counts.get(s, 0):>10,}" for s in statuses))
        lines.append("")
        for auth in sorted(self.by_auth):
            counts = self.by_auth[auth]
            top = ", ".join(f"{s} {c:,}" for s, c in counts.most_common())
            lines.append(f"auth {auth:<18} {top}")
        if self.rss_peak_mb is not None:
            lines.append(f"server RSS: {self.rss_start_mb:.0f} MB at start, {self.rss_peak_mb:.0f} MB peak")
        lines.extend(f"database: {check}" for check in self.database_checks)
        lines.append(f"violations: {len(self.violations)}")
        lines.extend(f"  {v}" for v in self.violations[:20])
        return "\n".join(lines)


@dataclass
class Target:
    """The server under test: where to call it, its database, and (for a process) its pid."""

    address: str
    engine: Engine
    pid: int | None = None
    alive: Callable[[], bool] = lambda: True


def rss_mb(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


class Fuzzer:
    """Provision customers and tokens in every auth state, then call until the time is up."""

    def __init__(self, target: Target, db: Database, *, seed: int = 1, only: Sequence[str] = ()) -> None:
        self.target = target
        self.db = db
        self.rng = random.Random(seed)
        self.methods = [m for m in methods() if not only or m.name in only]
        self.report = Report()
        self.incarnations: dict[str, Incarnation] = {}
        self.tokens: list[Token] = []
        self.values = Values(self.rng, lambda: [*self.incarnations, "GHOST", "IDLE"])
        self.channel = grpc.insecure_channel(target.address)
        self._calls: dict[tuple[str, bool, bool], Any] = {}
        self._admin = ""

    # -- provisioning -----------------------------------------------------------------------------

    def provision(self) -> None:
        now = SystemClock().now()
        admin = self.db.transaction(create_admin_token, "fuzz-admin", now).token
        revoked = self.db.transaction(create_admin_token, "fuzz-revoked", now).token
        self.db.transaction(revoke_admin_token, "fuzz-revoked", now)
        self._admin = admin
        self.tokens += [Token("admin", admin, "admin"), Token("admin-revoked", revoked, "admin")]
        for code in (*KEEPERS, "IDLE", "ROTATED"):
            issued = self.db.transaction(create_customer, code, code.title(), now)
            incarnation = self.incarnations[code] = Incarnation(code)
            label = "customer" if code in KEEPERS else code.lower()
            self.tokens.append(Token(label, issued.token, "customer", incarnation))
        self.db.transaction(set_active, "IDLE", False, now)
        self.incarnations["IDLE"].active = False
        self.tokens[-2].label = "customer-inactive"
        rotated = self.db.transaction(rotate_token, "ROTATED", None, timedelta(0), now)
        self.tokens[-1].label = "customer-rotated-out"
        self.tokens.append(
            Token("customer-rotated-in", rotated.token, "customer", self.incarnations["ROTATED"])
        )
        self.tokens += [
            Token("customer-unknown", mint(TokenKind.CUSTOMER), "customer"),
            Token("admin-unknown", mint(TokenKind.ADMIN), "admin"),
        ]

    # -- one call ---------------------------------------------------------------------------------

    def _auth(self, method: Method) -> tuple[str, tuple[tuple[str, str], ...], Token | None]:
        rng = self.rng
        if rng.random() < 0.55:
            if method.wants == "admin":
                token = self.tokens[0]
            else:
                keepers = [t for t in self.tokens if t.label == "customer"]
                token = rng.choice(keepers)
            return token.label, (("authorization", f"Bearer {token.value}"),), token
        labels = sorted({t.label for t in self.tokens})
        choice = rng.randrange(len(labels) + 4)  # each auth state equally likely, however many tokens
        if choice == 0:
            return "none", (), None
        if choice == 1:
            return (
                "malformed",
                (("authorization", rng.choice(["Basic abc", "Bearer", "bearer  x y", "token"])),),
                None,
            )
        if choice == 2:
            return "doubled", (("authorization", "Bearer a"), ("authorization", "Bearer b")), None
        if choice == 3:
            garbage = "fleet_" + "".join(rng.choice("abc-_.~!") for _ in range(rng.randrange(0, 80)))
            return "garbage", (("authorization", f"Bearer {garbage}"),), None
        token = rng.choice([t for t in self.tokens if t.label == labels[choice - 4]])
        label = token.label if token.kind == method.wants else f"wrong-kind:{token.label}"
        return label, (("authorization", f"Bearer {token.value}"),), token

    def _callable(self, method: Method) -> Any:
        key = (method.path, method.client_streaming, method.server_streaming)
        if key not in self._calls:
            shape = (
                ("stream" if method.client_streaming else "unary")
                + "_"
                + ("stream" if method.server_streaming else "unary")
            )
            self._calls[key] = getattr(self.channel, shape)(
                method.path, request_serializer=None, response_deserializer=None
            )
        return self._calls[key]

    def call_once(self) -> None:
        method = self.rng.choice(self.methods)
        auth, metadata, token = self._auth(method)
        mode, payloads = request_payloads(method, self.values)
        call = self._callable(method)
        responses: list[bytes] = []
        code = grpc.StatusCode.OK
        details = ""
        try:
            argument: Any = iter(payloads) if method.client_streaming else payloads[0]
            result = call(argument, metadata=metadata, timeout=CALL_TIMEOUT_S)
            if method.server_streaming:
                for response in result:
                    responses.append(response)
            else:
                responses.append(result)
        except grpc.RpcError as error:
            code = error.code()
            details = error.details() or ""
        except Exception as exc:  # the client itself choked: record it, it is not the server's fault
            self.report.violations.append(Violation("harness", method.name, auth, mode, repr(exc)))
            return
        status = code.name
        self.report.calls += 1
        self.report.statuses[status] += 1
        self.report.by_method[method.name][status] += 1
        self.report.by_auth[auth][status] += 1
        if code in VIOLATING:
            self.report.violations.append(
                Violation(status, method.name, auth, mode, details[:300], b"|".join(payloads)[:120].hex())
            )
        self._ledger(method, token, payloads, responses, code)

    # -- what accepted calls wrote ----------------------------------------------------------------

    def _ledger(
        self,
        method: Method,
        token: Token | None,
        payloads: list[bytes],
        responses: list[bytes],
        code: grpc.StatusCode,
    ) -> None:
        owner = token.owner if token is not None else None
        name = method.name
        if name == "PushMeasurements" and owner is not None and owner.alive:
            for payload, _ in zip(payloads, responses, strict=False):  # one ack per batch, in order
                batch = ingest_service_pb2.PushMeasurementsRequest.FromString(payload)
                for m in batch.measurements:
                    key = (m.device_id, m.metric, m.time.seconds * 1_000_000 + m.time.nanos // 1000)
                    owner.readings.setdefault(key, m.value)
            return
        if code != grpc.StatusCode.OK:
            return
        if name.startswith("Push") and owner is not None and owner.alive:
            resource = name.removeprefix("Push").lower()
            parent = _PARENT_FIELDS.get(resource)
            request_class = method.request_class()
            items: dict[int, int | None] = {}
            for payload in payloads:
                for item in getattr(request_class.FromString(payload), resource):
                    items[item.id] = getattr(item, parent) if parent else None
            owner.snapshots[resource] = items
            # Deleting a parent deletes its children (ON DELETE CASCADE).
            for child, parent_resource in _CASCADES.items():
                if parent_resource == resource and child in owner.snapshots:
                    kept = owner.snapshots[child]
                    owner.snapshots[child] = {i: p for i, p in kept.items() if p in items}
            return
        if name == "CreateCustomer":
            created = admin_service_pb2.CreateCustomerResponse.FromString(responses[0])
            incarnation = self.incarnations[created.customer.code] = Incarnation(created.customer.code)
            self.tokens.append(Token("customer-created", created.token, "customer", incarnation))
            return
        if name not in _CUSTOMER_CHANGES:
            return
        code = str(getattr(method.request_class().FromString(payloads[0]), "code"))  # noqa: B009
        found = self.incarnations.get(code)
        if found is None:  # accepted for a customer the ledger does not know: a bug on one side
            self.report.violations.append(Violation("ledger", name, "-", "-", f"{code} accepted but unknown"))
            return
        incarnation = found
        if name in ("ActivateCustomer", "DeactivateCustomer"):
            incarnation.active = name == "ActivateCustomer"
        elif name == "DeleteCustomer":
            incarnation.alive = False
            del self.incarnations[code]
        else:
            rotated = admin_service_pb2.RotateCustomerTokenResponse.FromString(responses[0])
            for old in self.tokens:  # out at once (zero grace) or when its window ends
                if old.owner is incarnation and old.label == "customer":
                    old.label = "customer-rotated-out"
            label = "customer" if code in KEEPERS else "customer-rotated-in"
            self.tokens.append(Token(label, rotated.token, "customer", incarnation))
        if code in KEEPERS:
            self._heal(code)

    def _heal(self, code: str) -> None:
        """Give a keeper customer back what a fuzzed admin call took (through the server too)."""
        metadata = (("authorization", f"Bearer {self._admin}"),)
        stub = admin_service_pb2
        if code not in self.incarnations:
            created = self.channel.unary_unary(
                "/fleet.v1.FleetAdminService/CreateCustomer",
                request_serializer=stub.CreateCustomerRequest.SerializeToString,
                response_deserializer=stub.CreateCustomerResponse.FromString,
            )(
                stub.CreateCustomerRequest(code=code, name=code.title()),
                metadata=metadata,
                timeout=CALL_TIMEOUT_S,
            )
            incarnation = self.incarnations[code] = Incarnation(code)
            for old in self.tokens:
                if old.label == "customer" and old.owner is not None and old.owner.code == code:
                    old.label = "customer-erased"
            self.tokens.append(Token("customer", created.token, "customer", incarnation))
        elif not self.incarnations[code].active:
            self.channel.unary_unary(
                "/fleet.v1.FleetAdminService/ActivateCustomer",
                request_serializer=stub.ActivateCustomerRequest.SerializeToString,
                response_deserializer=stub.ActivateCustomerResponse.FromString,
            )(stub.ActivateCustomerRequest(code=code), metadata=metadata, timeout=CALL_TIMEOUT_S)
            self.incarnations[code].active = True

    # -- the run ----------------------------------------------------------------------------------

    def run(self, seconds: float, rss_limit_mb: float | None = None) -> Report:
        report = self.report
        stop = threading.Event()
        sampler = threading.Thread(target=self._sample_rss, args=(stop,), daemon=True)
        sampler.start()
        started = time.monotonic()
        try:
            while time.monotonic() - started < seconds:
                self.call_once()
                if not self.target.alive():
                    report.violations.append(Violation("crash", "-", "-", "-", "the server process died"))
                    break
        finally:
            stop.set()
            sampler.join(5)
            report.seconds = time.monotonic() - started
        self._check_serving()
        self.check_database()
        if rss_limit_mb is not None and (report.rss_peak_mb or 0.0) > rss_limit_mb:
            report.violations.append(
                Violation(
                    "memory",
                    "-",
                    "-",
                    "-",
                    f"server RSS peaked at {report.rss_peak_mb:.0f} MB > {rss_limit_mb:.0f}",
                )
            )
        return report

    def _sample_rss(self, stop: threading.Event) -> None:
        pid = self.target.pid
        if pid is None:
            return
        while True:
            current = rss_mb(pid)
            if current is not None:
                if self.report.rss_start_mb is None:
                    self.report.rss_start_mb = current
                self.report.rss_peak_mb = max(self.report.rss_peak_mb or 0.0, current)
            if stop.wait(0.5):
                return

    def _check_serving(self) -> None:
        if not self.target.alive():
            return
        try:
            reply = health_pb2_grpc.HealthStub(self.channel).Check(
                health_pb2.HealthCheckRequest(), timeout=10
            )
        except grpc.RpcError as error:
            self.report.violations.append(Violation("health", "Check", "-", "-", f"{error.code()}"))
            return
        if reply.status != health_pb2.HealthCheckResponse.SERVING:
            self.report.violations.append(Violation("health", "Check", "-", "-", f"status {reply.status}"))

    def check_database(self) -> None:
        """What is stored equals what accepted calls wrote; nothing a refused call sent is there."""
        problems: list[str] = []
        readings = 0
        expected = {code: inc for code, inc in self.incarnations.items() if inc.alive}
        with self.target.engine.connect() as conn:
            stored = {
                str(code): (int(customer_id), bool(active))
                for code, customer_id, active in conn.execute(
                    text("SELECT code, id, is_active FROM fleet.customers")
                )
            }
            if set(stored) != set(expected):
                problems.append(f"customers {sorted(stored)} != ledger {sorted(expected)}")
            for code in set(stored) & set(expected):
                customer_id, active = stored[code]
                readings += _check_customer(conn, expected[code], customer_id, active, problems)
            orphans = conn.scalar(text(_ORPHAN_READINGS))
            if orphans:
                problems.append(f"{orphans} readings of no customer")
            disagreeing = conn.scalar(text(_ROLLUPS_DISAGREEING))
            if disagreeing:
                problems.append(f"{disagreeing} hourly rollups disagree with their rows")
            admin_tokens = conn.scalar(text("SELECT count(*) FROM fleet.admin_tokens"))
            if admin_tokens != 2:
                problems.append(f"{admin_tokens} admin tokens, 2 provisioned")
        self.report.database_checks.append(
            "MISMATCH"
            if problems
            else f"{len(expected)} customers, {readings:,} readings and every reference set are exactly "
            "what accepted calls wrote; every hourly rollup agrees with its rows"
        )
        for problem in problems:
            self.report.violations.append(Violation("database", "-", "-", "-", problem))

    def close(self) -> None:
        self.channel.close()


_ORPHAN_READINGS = """
SELECT count(*) FROM fleet.measurements AS m
WHERE NOT EXISTS (SELECT 1 FROM fleet.customers AS c WHERE c.id = m.customer_id)
"""
_ROLLUPS_DISAGREEING = """
SELECT count(*) FROM (
    SELECT customer_id, device_id, metric,
           date_bin('1 hour', time, timestamptz '2000-01-01Z') AS bucket, count(*) AS n, sum(value) AS s
    FROM fleet.measurements GROUP BY 1, 2, 3, 4
) AS m
FULL JOIN fleet.measurement_rollups_hourly AS r USING (customer_id, device_id, metric, bucket)
WHERE m.n IS NULL OR r.count IS NULL OR m.n <> r.count OR abs(m.s - r.sum) > 1e-6 * greatest(1, abs(m.s))
"""
_READINGS = """
SELECT device_id, metric, (extract(epoch FROM time) * 1000000)::bigint, value
FROM fleet.measurements WHERE customer_id = :c
"""


def _check_customer(
    conn: Any, incarnation: Incarnation, customer_id: int, active: bool, problems: list[str]
) -> int:
    """One customer's row and data against the ledger; the number of readings stored."""
    code = incarnation.code
    if active != incarnation.active:
        problems.append(f"{code}: is_active {active}, ledger says {incarnation.active}")
    for resource in ("sites", "devices", "municipalities", "tariffs"):
        query = text(f"SELECT id FROM fleet.{resource} WHERE customer_id = :c")
        ids = {int(row[0]) for row in conn.execute(query, {"c": customer_id})}
        wanted = set(incarnation.snapshots.get(resource, {}))
        if ids != wanted:
            problems.append(f"{code}: {resource} {sorted(ids)[:10]} != ledger {sorted(wanted)[:10]}")
    stored = {
        (int(d), str(m), int(us)): float(v)
        for d, m, us, v in conn.execute(text(_READINGS), {"c": customer_id})
    }
    wanted_readings = incarnation.readings
    if stored != wanted_readings:
        stray = len(set(stored) - set(wanted_readings))
        lost = len(set(wanted_readings) - set(stored))
        changed = sum(1 for k in set(stored) & set(wanted_readings) if stored[k] != wanted_readings[k])
        problems.append(f"{code}: readings stray {stray}, lost {lost}, changed {changed}")
    return len(stored)
