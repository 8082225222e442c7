"""Log format shared by `fleet-server` and its worker processes (one line per event, pid included)."""

from __future__ import annotations

import logging
import sys

# The pid tells the lines of `--workers N` processes apart; they all write to one stderr.
LOG_FORMAT = "%(asctime)s %(levelname)s pid=%(process)d %(name)s %(message)s"


def configure_logging(level: str) -> None:
    """Send every fleet log line to stderr at `level` (unknown names fall back to INFO)."""
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format=LOG_FORMAT,
        stream=sys.stderr,
        force=True,
    )
    if logging.getLogger().level > logging.DEBUG:
        # Step-by-step narration at INFO (initdb/pg_ctl, alembic's plugin set-up); their warnings
        # and errors still show.
        for chatty in ("pgserver", "alembic.runtime.plugins"):
            logging.getLogger(chatty).setLevel(logging.WARNING)
