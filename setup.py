"""Package layout that pyproject.toml alone cannot express.

The top-level `migrations/` folder ships inside the distribution as `fleet_server.migrations`, so
`fleet-server migrate` works after a plain `pip install` and not only from a checkout. The
generated `fleet.v1` stubs are not in here: they are the `fleet-sync-contract` distribution
(`generated/pyproject.toml`), a dependency.
"""

from setuptools import find_packages, setup

setup(
    packages=[
        *find_packages(include=["fleet_server", "fleet_server.*", "fleet_client", "fleet_client.*"]),
        "fleet_server.migrations",
        "fleet_server.migrations.versions",
    ],
    package_dir={"fleet_server.migrations": "migrations"},
    package_data={"fleet_server.migrations": ["script.py.mako"]},
)
