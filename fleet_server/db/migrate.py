"""Alembic, driven from code: `fleet-server migrate`, the embedded start-up and the tests share it."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # alembic is imported only when a migration runs: `serve` starts faster without it
    from alembic.config import Config


def _script_location() -> str:
    # Installed: the folder ships as `fleet_server.migrations`; in a checkout it is `migrations/`.
    import fleet_server

    packaged = Path(fleet_server.__file__).parent / "migrations"
    if (packaged / "env.py").exists():
        return str(packaged)
    return str(Path(fleet_server.__file__).resolve().parent.parent / "migrations")


def alembic_config(url: str) -> Config:
    """An alembic `Config` for `url`, without needing an alembic.ini on disk."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", _script_location())
    cfg.attributes["database_url"] = url
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    from alembic import command

    command.upgrade(alembic_config(url), revision)


def downgrade(url: str, revision: str = "base") -> None:
    from alembic import command

    command.downgrade(alembic_config(url), revision)


def check(url: str) -> None:
    """Raise when the models and the migrated schema disagree (`alembic check`)."""
    from alembic import command

    command.check(alembic_config(url))
