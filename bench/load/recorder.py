"""What one client process saw in one phase, by group (`fleet/live-backfill`, `ramp/300`, …).

Per group: latencies of acknowledged work, the time every attempt waited for its first answer
(an acknowledgement, a refusal, or the harness's own deadline), outcomes by status name, stalls,
and the accepted rows with the wall time of their acknowledgement (so rows/s can be taken over
any window, across processes). The orchestrator merges the groups of every
process; raw latencies travel back so percentiles are computed once over all of them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from bench.load.stats import merge_counts


@dataclass
class Group:
    latencies: list[float] = field(default_factory=list)
    answers: list[float] = field(default_factory=list)
    statuses: dict[str, int] = field(default_factory=dict)
    slowest_answer: float = 0.0
    stalls: int = 0
    acks: list[tuple[float, int]] = field(default_factory=list)
    counters: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "latencies": self.latencies,
            "answers": self.answers,
            "statuses": self.statuses,
            "slowest_answer": self.slowest_answer,
            "stalls": self.stalls,
            "acks": self.acks,
            "counters": self.counters,
        }


@dataclass
class Recorder:
    stall_s: float
    groups: dict[str, Group] = field(default_factory=dict)

    def group(self, name: str) -> Group:
        found = self.groups.get(name)
        if found is None:
            found = self.groups[name] = Group()
        return found

    def status(self, name: str, key: str) -> None:
        statuses = self.group(name).statuses
        statuses[key] = statuses.get(key, 0) + 1

    def answered(self, name: str, seconds: float) -> None:
        """The first answer (an acknowledgement or a status) came after `seconds`; for a call the
        harness cut before any answer, `seconds` is how long it had waited (a lower bound)."""
        group = self.group(name)
        group.answers.append(seconds)
        group.slowest_answer = max(group.slowest_answer, seconds)
        if seconds > self.stall_s:
            group.stalls += 1

    def latency(self, name: str, seconds: float) -> None:
        self.group(name).latencies.append(seconds)

    def ack(self, name: str, accepted: int) -> None:
        self.group(name).acks.append((time.time(), accepted))

    def count(self, name: str, counter: str, amount: int = 1) -> None:
        counters = self.group(name).counters
        counters[counter] = counters.get(counter, 0) + amount

    def take(self) -> dict[str, dict[str, Any]]:
        """Everything recorded since the last `take`, as plain data for the pipe."""
        groups, self.groups = self.groups, {}
        return {name: group.as_dict() for name, group in groups.items()}


def merge_groups(parts: list[dict[str, dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """The groups of several processes as one: lists joined, counts added, maxima kept."""
    merged: dict[str, dict[str, Any]] = {}
    for part in parts:
        for name, group in part.items():
            into = merged.setdefault(name, Group().as_dict())
            into["latencies"].extend(group["latencies"])
            into["answers"].extend(group["answers"])
            into["acks"].extend(group["acks"])
            merge_counts(into["statuses"], group["statuses"])
            merge_counts(into["counters"], group["counters"])
            into["slowest_answer"] = max(into["slowest_answer"], group["slowest_answer"])
            into["stalls"] += group["stalls"]
    return merged
