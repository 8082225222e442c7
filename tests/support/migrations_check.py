"""`make test`'s migration gate: on a fresh database, upgrade head, check, downgrade base, upgrade.

Run as `python -m tests.support.migrations_check`; exits non-zero on any failure.
"""

from __future__ import annotations

import sys

from fleet_server.db import migrate
from tests.support.database import base_url, create_scratch_database, drop_database


def main() -> int:
    scratch = create_scratch_database(base_url(), prefix="fleet_migcheck")
    try:
        migrate.upgrade(scratch)
        migrate.check(scratch)  # raises when models and migrations disagree
        migrate.downgrade(scratch, "base")
        migrate.upgrade(scratch)
        migrate.check(scratch)
    finally:
        drop_database(scratch)
    print("migrations: upgrade head, check, downgrade base, upgrade head, check: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
