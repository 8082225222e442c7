"""The distribution on its own: the built wheel in a fresh virtualenv, away from this checkout.

This is what another team does with `pip install .`: import the generated `fleet.v1` stubs and
call a running server, and run `fleet-server migrate` from the installed package (the alembic
environment ships inside the wheel as `fleet_server.migrations`).

By default the wheel is installed without its dependencies, which the fresh environment borrows
from the one running the tests (a `.pth` line naming its site-packages; `.pth` files there are
not processed, so this checkout's editable install stays invisible): offline and a few seconds.
`FLEET_TEST_PACKAGING_INDEX=1` installs the dependencies from the package index instead, as a
plain `pip install` does (25-55 s here with a warm pip cache). `make test`'s own bootstrap
already resolves the same dependency list from the index.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.database import create_scratch_database, drop_database
from tests.support.process import free_port, wait_serving

pytestmark = pytest.mark.e2e

CHECKOUT = Path(__file__).resolve().parents[2]
_NOT_SOURCE = shutil.ignore_patterns(
    ".venv", ".git", ".fleet", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", ".proto-*"
)

CLIENT = """
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


@dataclass(frozen=True)
class Installed:
    wheel: Path
    bin: Path
    workdir: Path
    env: dict[str, str]

    def run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            args, cwd=self.workdir, env=self.env, capture_output=True, text=True, timeout=timeout, check=False
        )


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME"}}
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory, database_url: str) -> Iterator[Installed]:
    root = tmp_path_factory.mktemp("packaging")
    source = root / "source"
    shutil.copytree(CHECKOUT, source, ignore=_NOT_SOURCE)
    dist = root / "dist"
    build = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            str(source),
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(dist),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert build.returncode == 0, build.stderr
    (wheel,) = dist.glob("fleet_sync-*.whl")
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    workdir = root / "elsewhere"
    workdir.mkdir()
    scratch = create_scratch_database(database_url, prefix="fleet_h1_pkg")
    env = _clean_env(FLEET_DATABASE_URL=scratch, FLEET_DATA_DIR=str(workdir / ".fleet"))
    result = Installed(wheel=wheel, bin=venv / "bin", workdir=workdir, env=env)
    pip = (sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "-q")
    if os.environ.get("FLEET_TEST_PACKAGING_INDEX") == "1":
        install = result.run(*pip, str(wheel), timeout=600)
    else:
        install = result.run(*pip, "--no-deps", "--no-index", str(wheel))
        purelib = result.run(
            str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"
        ).stdout.strip()
        (Path(purelib) / "_borrowed_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    assert install.returncode == 0, install.stderr
    yield result
    drop_database(scratch)


def test_wheel_holds_the_generated_stubs_and_the_migrations(installed):
    names = set(zipfile.ZipFile(installed.wheel).namelist())
    assert {
        "fleet/__init__.py",
        "fleet/v1/__init__.py",
        "fleet/v1/query_service_pb2_grpc.py",
        "fleet/v1/query_service_pb2.pyi",
        "fleet_server/migrations/env.py",
        "fleet_server/migrations/script.py.mako",
        "fleet_server/migrations/versions/0001_initial_schema.py",
    } <= names
    assert not any(name.startswith(("generated/", "migrations/", "tests/")) for name in names)


def test_installed_packages_and_console_scripts_come_from_the_wheel(installed):
    for script in ("fleet-server", "fleetctl", "fleet-push"):
        assert (installed.bin / script).exists(), script
    where = installed.run(
        str(installed.bin / "python"),
        "-c",
        "import sys, fleet.v1, fleet_client, fleet_server.migrations as m; "
        "print(all(x.__file__.startswith(sys.prefix) for x in (fleet.v1, fleet_client, m)))",
    )
    assert where.stdout.strip() == "True", where.stderr


def test_installed_package_migrates_serves_and_answers_its_own_stubs(installed):
    migrated = installed.run(str(installed.bin / "fleet-server"), "migrate")
    assert migrated.returncode == 0, migrated.stderr
    assert "database migrated to head" in migrated.stderr
    minted = installed.run(str(installed.bin / "fleet-server"), "admin-token", "create", "packaging")
    assert minted.returncode == 0, minted.stderr
    token = minted.stdout.strip()

    target = f"127.0.0.1:{free_port()}"
    server = subprocess.Popen(
        [str(installed.bin / "fleet-server"), "serve", "--listen", target],
        cwd=installed.workdir,
        env=installed.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_serving(target)
        called = installed.run(str(installed.bin / "python"), "-c", CLIENT, target, token)
    finally:
        server.terminate()
        output, _ = server.communicate(timeout=30)
    assert called.returncode == 0, called.stderr
    assert called.stdout.split("\n")[:2] == ["without token: UNAUTHENTICATED", "customers: 0"]
    assert "listening on" in output
