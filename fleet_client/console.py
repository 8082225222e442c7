"""What `fleet-push` and `fleetctl` share around their output: a reader that leaves early, and errors.

`| head` closes the pipe while a command is still printing: both CLIs run their command through
`until_reader_leaves`, so that ends quietly, with the status the command would have had, and
without the interpreter's own failing flush at exit. An error is one line on stderr, or, when
`--json` was asked for, a JSON document on stdout, where the script is reading.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from typing import Any, TextIO


def until_reader_leaves(command: Callable[[], int]) -> int:
    """`command()`'s exit status; when stdout's reader has gone away, 0 and no traceback."""
    try:
        status = command()
        sys.stdout.flush()  # inside the try: a buffered tail fails here, not at interpreter exit
        return status
    except BrokenPipeError:
        # Point stdout at /dev/null so the interpreter's last flush has somewhere to go (the
        # descriptor lives until the imminent exit).
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def print_error(prog: str, message: str, *, as_json: bool, out: TextIO | None = None, **detail: Any) -> None:
    """`prog: message` on stderr; with `as_json`, `{"error": {"message": …, **detail}}` on `out`.

    `detail` carries what a script branches on (`kind`, the status `code`, the `reason`). When
    `out` is not a terminal (captured: `TOKEN=$(fleetctl … --json | …)`), the line goes to stderr
    as well, so the capture does not swallow the reason.
    """
    out = out or sys.stdout
    if as_json:
        document = {"error": {"message": message, **{k: v for k, v in detail.items() if v is not None}}}
        print(json.dumps(document, indent=2), file=out)
        if out.isatty():
            return
    print(f"{prog}: {message}", file=sys.stderr)
