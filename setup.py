"""Package layout that pyproject.toml alone cannot express.

`generated/` is a package root (the committed protoc output, imported as `fleet.v1`), and the
top-level `migrations/` folder ships inside the distribution as `fleet_server.migrations`, so
`fleet-server migrate` works after a plain `pip install` and not only from a checkout.
"""

from setuptools import find_packages, setup

setup(
    packages=[
        *find_packages(include=["fleet_server", "fleet_server.*", "fleet_client", "fleet_client.*"]),
        *find_packages(where="generated"),
        "fleet_server.migrations",
        "fleet_server.migrations.versions",
    ],
    package_dir={
        "fleet": "generated/fleet",
        "fleet_server.migrations": "migrations",
    },
    package_data={"fleet_server.migrations": ["script.py.mako"]},
)
