"""Server memory while the load runs: VmRSS of the server process and every process under it.

With `--workers N` the server is a supervisor plus N workers, so the figure is the sum over the
process tree (what the machine has to hold), with the largest single process beside it.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from typing import Any

_INTERVAL_S = 0.5


def _rss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _tree(root: int) -> list[int]:
    """`root` and its descendants, from the parent pids in /proc/*/stat."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                stat = handle.read()
        except OSError:
            continue
        # The command name may hold spaces and parentheses: the fields after the last ')' are fixed.
        fields = stat.rsplit(")", 1)[-1].split()
        if len(fields) > 1:
            children.setdefault(int(fields[1]), []).append(int(entry))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


@dataclass
class RssSampler:
    """Samples the server tree every half second on a thread; peaks are kept per phase."""

    root: int
    phase: str = "setup"
    peaks: dict[str, dict[str, int]] = field(default_factory=dict)
    samples: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> RssSampler:
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(_INTERVAL_S)

    def sample(self) -> None:
        sizes = [_rss_kib(pid) for pid in _tree(self.root)]
        total, largest = sum(sizes), max(sizes, default=0)
        peak = self.peaks.setdefault(self.phase, {"total_kib": 0, "largest_kib": 0, "processes": 0})
        if total > peak["total_kib"]:
            peak.update(total_kib=total, processes=sum(1 for s in sizes if s))
        peak["largest_kib"] = max(peak["largest_kib"], largest)
        self.samples += 1

    def stop(self) -> dict[str, Any]:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        overall = max((p["total_kib"] for p in self.peaks.values()), default=0)
        return {"peak_total_kib": overall, "by_phase": self.peaks, "samples": self.samples}
