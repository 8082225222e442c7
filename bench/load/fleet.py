"""The orchestrator's side of the client processes: start them, send each a phase, collect the answers.

Every wait has a limit: a client process that does not answer in time is reported (its share of
the figures is missing, and the table says so) and killed when the run ends.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import time
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from bench.load import client
from bench.load.plan import Plan

_STOP_WAIT_S = 10.0


class ClientFleet:
    """`plan.clients` spawned processes (fresh interpreters: no gRPC state is ever forked)."""

    def __init__(
        self, plan: Plan, target: str, admin_token: str, tokens: dict[str, str], received_base: int
    ) -> None:
        context = multiprocessing.get_context("spawn")
        self.plan = plan
        self._conns: list[Connection] = []
        self._procs: list[BaseProcess] = []
        self._lost: set[int] = set()  # processes that missed an answer: their pipe is out of step
        for index in range(plan.clients):
            mine, theirs = context.Pipe()
            proc = context.Process(
                target=client.main,
                args=(index, plan, target, admin_token, tokens, received_base, theirs),
                name=f"load-client-{index}",
                daemon=True,
            )
            proc.start()
            theirs.close()
            self._conns.append(mine)
            self._procs.append(proc)

    def ask(self, commands: dict[int, dict[str, Any]], timeout_s: float) -> dict[int, dict[str, Any]]:
        """Send each process its command; their answers, or an error for any that did not answer."""
        answers: dict[int, dict[str, Any]] = {}
        for index in [i for i in commands if i in self._lost]:
            answers[index] = {"error": f"client process {index} is out of the run (it missed an answer)"}
        asked = [i for i in commands if i not in self._lost]
        for index in asked:
            self._conns[index].send(commands[index])
        deadline = time.monotonic() + timeout_s
        for index in asked:
            remaining = max(0.0, deadline - time.monotonic())
            conn = self._conns[index]
            try:
                if conn.poll(remaining):
                    answers[index] = conn.recv()
                else:
                    self._lost.add(index)
                    answers[index] = {"error": f"client process {index} gave no answer in {timeout_s:.0f}s"}
            except (EOFError, OSError) as exc:
                self._lost.add(index)
                answers[index] = {"error": f"client process {index} is gone: {exc!r}"}
        return answers

    def everyone(self, command: dict[str, Any], timeout_s: float) -> dict[int, dict[str, Any]]:
        return self.ask({i: dict(command) for i in range(len(self._procs))}, timeout_s)

    def stop(self) -> None:
        for conn in self._conns:
            with contextlib.suppress(OSError):
                conn.send({"op": "stop"})
        deadline = time.monotonic() + _STOP_WAIT_S
        for proc in self._procs:
            proc.join(max(0.1, deadline - time.monotonic()))
            if proc.is_alive():
                proc.kill()
                proc.join(5)
        for conn in self._conns:
            conn.close()
