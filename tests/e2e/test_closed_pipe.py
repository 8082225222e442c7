"""A reader that leaves early (`| head`) ends `fleet-push` quietly too: status 0, nothing on stderr.

fleetctl's side is in test_fleetctl_show (a listing) and the unit test_fleetctl_listings; both
CLIs go through the one `fleet_client.console.until_reader_leaves`.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.support.process import cli


def test_fleet_push_status_json_into_a_closed_pipe(tmp_path: Path) -> None:
    env = {**os.environ, "FLEET_STATE_URL": f"sqlite:///{tmp_path / 'state.db'}"}
    reader = subprocess.Popen(
        [cli("fleet-push"), "status", "--json"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert reader.stdout is not None
    assert reader.stderr is not None
    reader.stdout.close()  # gone before the first byte: every write meets a closed pipe
    assert reader.wait(timeout=60) == 0
    assert reader.stderr.read() == ""
