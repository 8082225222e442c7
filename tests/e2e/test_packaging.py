"""The two distributions on their own: built wheels in fresh virtualenvs, away from this checkout.

`fleet-sync-contract` (`generated/pyproject.toml`) is what another service installs to call the
server: the `fleet.v1` stubs and the `.proto` files, depending on grpcio, protobuf and
googleapis-common-protos only. Its venv gets those from the package index exactly as a plain
`pip install` does (a second or two with pip's cache warm from `make`'s own bootstrap); then its
stubs, and grpcurl fed the shipped `.proto` files, call a real server running without reflection.

`fleet-sync` (server and client) is installed next to the contract wheel, as an operator does
with `pip install ./generated .`, and runs `fleet-server migrate`, `admin-token create` and
`serve` from the installed package (the alembic environment ships inside the wheel as
`fleet_server.migrations`). That venv gets the wheels without their dependencies by default and
borrows the test environment's through a `.pth` line naming its site-packages (`.pth` files there
are not processed, so this checkout's editable installs stay invisible): offline and a few
seconds. `FLEET_TEST_PACKAGING_INDEX=1` installs them from the package index instead.
"""

from __future__ import annotations

import email
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import Message
from functools import cached_property
from pathlib import Path

import pytest

from tests.support.database import create_scratch_database, drop_database
from tests.support.process import cli, free_port, wait_serving

pytestmark = pytest.mark.e2e

CHECKOUT = Path(__file__).resolve().parents[2]
PROTOS = sorted((CHECKOUT / "protos" / "fleet" / "v1").glob("*.proto"))
_NOT_SOURCE = shutil.ignore_patterns(
    ".venv", ".git", ".fleet", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", ".proto-*"
)
# What another service must not get from the contract: the server's storage stack.
_SERVER_ONLY = {"fleet-sync", "sqlalchemy", "psycopg", "psycopg-binary", "pgserver", "alembic"}

FULL_CLIENT = """
import sys
import grpc
from fleet.v1 import admin_service_pb2, admin_service_pb2_grpc, query_service_pb2, query_service_pb2_grpc

assert query_service_pb2_grpc.__file__.startswith(sys.prefix), query_service_pb2_grpc.__file__
target, token = sys.argv[1], sys.argv[2]
with grpc.insecure_channel(target) as channel:
    query = query_service_pb2_grpc.FleetQueryServiceStub(channel)
    try:
        query.GetCustomerDetail(query_service_pb2.GetCustomerDetailRequest(code="ACME"), timeout=10)
    except grpc.RpcError as err:
        print("without token:", err.code().name)
    admin = admin_service_pb2_grpc.FleetAdminServiceStub(channel)
    reply = admin.ListCustomers(
        admin_service_pb2.ListCustomersRequest(), metadata=(("authorization", "Bearer " + token),), timeout=10
    )
    print("customers:", len(reply.customers))
"""

# Another service's code: the contract's stubs through all three services, and the error details
# decoded with googleapis-common-protos alone (no grpcio-status in this venv).
CONTRACT_CLIENT = """
import sys
import grpc
from google.rpc import error_details_pb2, status_pb2
from fleet.v1 import (
    admin_service_pb2, admin_service_pb2_grpc, ingest_service_pb2, ingest_service_pb2_grpc,
    query_service_pb2, query_service_pb2_grpc, resources_pb2,
)

assert admin_service_pb2_grpc.__file__.startswith(sys.prefix), admin_service_pb2_grpc.__file__
target, admin_token, code = sys.argv[1], sys.argv[2], sys.argv[3]
as_admin = (("authorization", "Bearer " + admin_token),)
with grpc.insecure_channel(target) as channel:
    admin = admin_service_pb2_grpc.FleetAdminServiceStub(channel)
    try:
        admin.ListCustomers(admin_service_pb2.ListCustomersRequest(), timeout=10)
    except grpc.RpcError as err:
        status = status_pb2.Status.FromString(dict(err.trailing_metadata())["grpc-status-details-bin"])
        info = error_details_pb2.ErrorInfo()
        (detail,) = [d for d in status.details if d.Is(error_details_pb2.ErrorInfo.DESCRIPTOR)]
        detail.Unpack(info)
        print("without token:", err.code().name, info.reason)
    created = admin.CreateCustomer(
        admin_service_pb2.CreateCustomerRequest(code=code, name="Contract user"),
        metadata=as_admin,
        timeout=10,
    )
    site = resources_pb2.Site(id=1, name="HQ", address="1 Main Rd", timezone="UTC")
    pushed = ingest_service_pb2_grpc.FleetIngestServiceStub(channel).PushSites(
        iter([ingest_service_pb2.PushSitesRequest(sites=[site])]),
        metadata=(("authorization", "Bearer " + created.token),),
        timeout=10,
    )
    print("sites inserted:", pushed.summary.inserted)
    detail = query_service_pb2_grpc.FleetQueryServiceStub(channel).GetCustomerDetail(
        query_service_pb2.GetCustomerDetailRequest(code=code), metadata=as_admin, timeout=10
    )
    print("sites held:", [s.name for s in detail.sites])
    erased = admin.DeleteCustomer(
        admin_service_pb2.DeleteCustomerRequest(code=code), metadata=as_admin, timeout=10
    )
    print("sites erased:", erased.deleted_rows["sites"])
"""


@dataclass(frozen=True)
class Wheels:
    contract: Path
    server: Path


@dataclass(frozen=True)
class Venv:
    root: Path
    workdir: Path
    env: dict[str, str]

    @property
    def bin(self) -> Path:
        return self.root / "bin"

    @property
    def python(self) -> str:
        return str(self.bin / "python")

    def run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            args, cwd=self.workdir, env=self.env, capture_output=True, text=True, timeout=timeout, check=False
        )

    def pip(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """The test environment's pip acting on this venv, which has none of its own (smaller, quicker)."""
        return self.run(sys.executable, "-m", "pip", "--python", self.python, *args, timeout=timeout)

    @cached_property
    def purelib(self) -> Path:
        where = self.run(self.python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])")
        return Path(where.stdout.strip())


@dataclass(frozen=True)
class Serving:
    target: str
    admin_token: str
    migrate_log: str
    log: Path


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME"}}
    env.update(extra)
    return env


def _new_venv(root: Path, env: dict[str, str]) -> Venv:
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root / "venv")], check=True)
    workdir = root / "elsewhere"
    workdir.mkdir()
    return Venv(root=root / "venv", workdir=workdir, env=env)


def _metadata(wheel: Path) -> Message:
    with zipfile.ZipFile(wheel) as archive:
        (name,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        return email.message_from_bytes(archive.read(name))


def _requirement_names(metadata: Message) -> list[str]:
    """Names of the unconditional requirements (extras such as `dev` left out)."""
    requires = [r for r in metadata.get_all("Requires-Dist") or [] if "extra ==" not in r]
    return sorted(re.split(r"[^A-Za-z0-9._-]", r, maxsplit=1)[0].lower() for r in requires)


def _grpcurl(venv: Venv, *args: str) -> subprocess.CompletedProcess[str]:
    return venv.run(cli("grpcurl"), "-plaintext", *args, timeout=30)


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> Wheels:
    """Both wheels, built from a copy of the tree (what `pip install ./generated .` builds)."""
    root = tmp_path_factory.mktemp("wheels")
    source = root / "source"
    shutil.copytree(CHECKOUT, source, ignore=_NOT_SOURCE)
    dist = root / "dist"
    build = subprocess.run(
        [
            *(sys.executable, "-m", "pip", "wheel", str(source / "generated"), str(source)),
            *("--no-deps", "--no-build-isolation", "-q", "-w", str(dist)),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert build.returncode == 0, build.stderr
    (contract,) = dist.glob("fleet_sync_contract-*.whl")
    (server,) = dist.glob("fleet_sync-*.whl")
    return Wheels(contract=contract, server=server)


@pytest.fixture(scope="module")
def contract_venv(tmp_path_factory: pytest.TempPathFactory, wheels: Wheels) -> Venv:
    """The contract wheel alone, its dependencies resolved from the package index like any user's."""
    venv = _new_venv(tmp_path_factory.mktemp("contract"), _clean_env())
    install = venv.pip("install", "-q", str(wheels.contract), timeout=600)
    assert install.returncode == 0, install.stderr
    return venv


@pytest.fixture(scope="module")
def full_venv(tmp_path_factory: pytest.TempPathFactory, wheels: Wheels, database_url: str) -> Iterator[Venv]:
    """Server and client with the contract, pointed at a database of their own."""
    root = tmp_path_factory.mktemp("full")
    scratch = create_scratch_database(database_url, prefix="fleet_h1_pkg")
    env = _clean_env(FLEET_DATABASE_URL=scratch, FLEET_DATA_DIR=str(root / "elsewhere" / ".fleet"))
    venv = _new_venv(root, env)
    if os.environ.get("FLEET_TEST_PACKAGING_INDEX") == "1":
        install = venv.pip("install", "-q", str(wheels.contract), str(wheels.server), timeout=600)
    else:
        install = venv.pip(
            "install", "-q", "--no-deps", "--no-index", str(wheels.contract), str(wheels.server)
        )
        (venv.purelib / "_borrowed_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    assert install.returncode == 0, install.stderr
    yield venv
    drop_database(scratch)


@pytest.fixture(scope="module")
def serving(full_venv: Venv) -> Iterator[Serving]:
    """The installed `fleet-server`, migrated and serving with reflection off."""
    migrated = full_venv.run(str(full_venv.bin / "fleet-server"), "migrate")
    assert migrated.returncode == 0, migrated.stderr
    minted = full_venv.run(str(full_venv.bin / "fleet-server"), "admin-token", "create", "packaging")
    assert minted.returncode == 0, minted.stderr
    target = f"127.0.0.1:{free_port()}"
    log = full_venv.workdir / "server.log"
    with log.open("w") as output:
        server = subprocess.Popen(
            [str(full_venv.bin / "fleet-server"), "serve", "--listen", target, "--no-reflection"],
            cwd=full_venv.workdir,
            env=full_venv.env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_serving(target)
        yield Serving(target=target, admin_token=minted.stdout.strip(), migrate_log=migrated.stderr, log=log)
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_contract_wheel_holds_stubs_typing_stubs_and_protos_and_needs_only_grpc_and_protobuf(wheels):
    names = set(zipfile.ZipFile(wheels.contract).namelist())
    assert {
        "fleet/__init__.py",
        "fleet/py.typed",
        "fleet/v1/__init__.py",
        "fleet/v1/query_service_pb2.py",
        "fleet/v1/query_service_pb2.pyi",
        "fleet/v1/query_service_pb2_grpc.py",
        *(f"fleet/v1/{proto.name}" for proto in PROTOS),
    } <= names
    assert all(name.startswith(("fleet/", "fleet_sync_contract-")) for name in names), names
    assert _requirement_names(_metadata(wheels.contract)) == [
        "googleapis-common-protos",
        "grpcio",
        "protobuf",
    ]


def test_server_wheel_leaves_the_stubs_to_the_contract_of_its_own_version(wheels):
    names = set(zipfile.ZipFile(wheels.server).namelist())
    assert {
        "fleet_server/migrations/env.py",
        "fleet_server/migrations/script.py.mako",
        "fleet_server/migrations/versions/0001_initial_schema.py",
    } <= names
    assert not any(name.startswith(("fleet/", "generated/", "migrations/", "tests/")) for name in names)
    server, contract = _metadata(wheels.server), _metadata(wheels.contract)
    assert server["Version"] == contract["Version"]
    assert f"fleet-sync-contract=={contract['Version']}" in (server.get_all("Requires-Dist") or [])


def test_contract_installs_alone_without_a_database_driver(contract_venv):
    listed = contract_venv.pip("list", "--format", "json")
    assert listed.returncode == 0, listed.stderr
    names = {re.sub(r"[-_.]+", "-", p["name"]).lower() for p in json.loads(listed.stdout)}
    assert {"fleet-sync-contract", "grpcio", "protobuf", "googleapis-common-protos"} <= names
    assert not names & _SERVER_ONLY, names
    consistent = contract_venv.pip("check")
    assert consistent.returncode == 0, consistent.stdout
    importable = contract_venv.run(
        contract_venv.python,
        "-c",
        "import importlib.util as u; "
        "print([m for m in ('sqlalchemy', 'psycopg', 'pgserver', 'alembic', 'fleet_server', 'fleet_client') "
        "if u.find_spec(m)])",
    )
    assert importable.stdout.strip() == "[]", importable.stderr


def test_contract_ships_the_proto_files_the_stubs_were_made_from(contract_venv):
    shipped = contract_venv.run(
        contract_venv.python,
        "-c",
        "import json; from importlib.resources import files; "
        "print(json.dumps({p.name: p.read_text() for p in files('fleet.v1').iterdir() "
        "if p.name.endswith('.proto')}))",
    )
    assert shipped.returncode == 0, shipped.stderr
    assert json.loads(shipped.stdout) == {proto.name: proto.read_text() for proto in PROTOS}


def test_contract_stubs_call_a_running_server(contract_venv, serving):
    called = contract_venv.run(
        contract_venv.python, "-c", CONTRACT_CLIENT, serving.target, serving.admin_token, "PKG_STUBS"
    )
    assert called.returncode == 0, called.stderr
    assert called.stdout.splitlines() == [
        "without token: UNAUTHENTICATED TOKEN_MISSING",
        "sites inserted: 1",
        "sites held: ['HQ']",
        "sites erased: 1",
    ]


def test_grpcurl_calls_the_server_from_the_shipped_protos_with_reflection_off(contract_venv, serving):
    import_path = contract_venv.run(
        contract_venv.python, "-c", "import pathlib, fleet; print(pathlib.Path(fleet.__file__).parents[1])"
    ).stdout.strip()
    assert import_path.startswith(str(contract_venv.root)), import_path

    without_protos = _grpcurl(contract_venv, serving.target, "list")
    assert without_protos.returncode != 0
    assert "does not support the reflection API" in without_protos.stderr

    protos = ("-import-path", import_path, "-proto", "fleet/v1/admin_service.proto")
    auth = ("-H", f"authorization: Bearer {serving.admin_token}")
    method = "fleet.v1.FleetAdminService/"
    created = _grpcurl(
        contract_venv,
        *protos,
        *auth,
        "-d",
        '{"code": "PKG_GRPCURL", "name": "grpcurl"}',
        serving.target,
        method + "CreateCustomer",
    )
    assert created.returncode == 0, created.stderr
    reply = json.loads(created.stdout)
    assert reply["customer"]["code"] == "PKG_GRPCURL"
    assert reply["token"]
    deleted = _grpcurl(
        contract_venv,
        *protos,
        *auth,
        "-d",
        '{"code": "PKG_GRPCURL"}',
        serving.target,
        method + "DeleteCustomer",
    )
    assert deleted.returncode == 0, deleted.stderr
    assert json.loads(deleted.stdout)["deletedRows"]["customers"] == "1"


def test_installed_packages_and_console_scripts_come_from_the_wheels(full_venv):
    for script in ("fleet-server", "fleetctl", "fleet-push"):
        assert (full_venv.bin / script).exists(), script
    where = full_venv.run(
        full_venv.python,
        "-c",
        "import sys, fleet.v1, fleet_client, fleet_server.migrations as m; "
        "print(all(x.__file__.startswith(sys.prefix) for x in (fleet.v1, fleet_client, m)))",
    )
    assert where.stdout.strip() == "True", where.stderr


def test_installed_package_migrates_serves_and_answers_its_own_stubs(full_venv, serving):
    assert "database migrated to head" in serving.migrate_log
    called = full_venv.run(full_venv.python, "-c", FULL_CLIENT, serving.target, serving.admin_token)
    assert called.returncode == 0, called.stderr
    lines = called.stdout.splitlines()
    assert lines[0] == "without token: UNAUTHENTICATED"
    assert re.fullmatch(r"customers: \d+", lines[1]), lines
    assert "listening on" in serving.log.read_text()
