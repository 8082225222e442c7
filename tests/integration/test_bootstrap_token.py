"""`make run`'s admin-token bootstrap survives a lost token file."""

from __future__ import annotations

from dataclasses import replace

import pytest

from fleet_server.cli import _bootstrap_admin_token, admin_token_file
from fleet_server.clock import SystemClock
from fleet_server.domain.authentication import AdminIdentity, find_identity
from fleet_server.errors import Unauthenticated


def test_lost_file_revokes_the_unusable_token_and_mints_a_new_one(db, settings, tmp_path):
    local = replace(settings, data_dir=tmp_path)
    path = admin_token_file(local)

    _bootstrap_admin_token(local, db)
    first = path.read_text().strip()
    _bootstrap_admin_token(local, db)  # file present: kept as is
    assert path.read_text().strip() == first

    path.unlink()
    _bootstrap_admin_token(local, db)
    second = path.read_text().strip()

    assert second != first
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    identity = db.autocommit(find_identity, second, SystemClock())
    assert isinstance(identity, AdminIdentity)
    assert identity.name == "local-admin-2"
    with pytest.raises(Unauthenticated, match="unknown or revoked admin token"):
        db.autocommit(find_identity, first, SystemClock())
