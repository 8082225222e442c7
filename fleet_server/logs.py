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
        # pgserver narrates every initdb/pg_ctl step at INFO; its warnings and errors still show.
        logging.getLogger("pgserver").setLevel(logging.WARNING)
