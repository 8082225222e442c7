"""An in-process grpc.aio server on a random loopback port, driven by ordinary sync clients.

The server's event loop runs on a background thread, so tests stay plain synchronous pytest
functions that call the server exactly as a remote client would.
"""

from __future__ import annotations

import asyncio
import sys
import threading
import traceback
from collections.abc import Coroutine
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import replace
from typing import Any, TypeVar

from fleet_server.app import App
from fleet_server.server import RunningServer, start_server

T = TypeVar("T")


class InProcessServer:
    """Starts `app` on 127.0.0.1:0; `target` is what a client dials."""

    def __init__(self, app: App) -> None:
        self.app = app
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self.running: RunningServer | None = None

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        """Run `coro` on the server's loop and wait for its result.

        A coroutine that does not finish in time fails the test with what the server was doing:
        every task of its loop and every thread of the process, where each is waiting (a server
        stop once hung for 30 s in a full run and nowhere else; this says where, next time).
        """
        future: Future[T] = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result(timeout)
        except FutureTimeout:
            raise AssertionError(f"no result within {timeout:g} s\n{self._where()}") from None

    def _where(self) -> str:
        lines = ["-- tasks of the server's loop --"]
        for task in asyncio.all_tasks(self._loop):
            lines.append(repr(task))
            stack = task.get_stack()
            if stack:
                lines.extend(traceback.format_list(traceback.extract_stack(stack[-1]))[-6:])
        lines.append("-- threads --")
        names = {thread.ident: thread.name for thread in threading.enumerate()}
        for ident, frame in sys._current_frames().items():
            lines.append(f"thread {names.get(ident, ident)}:")
            lines.extend(traceback.format_stack(frame)[-6:])
        return "\n".join(lines)

    def start(self) -> InProcessServer:
        self._thread.start()
        settings = replace(self.app.settings, listen="127.0.0.1:0")
        self.app.settings = settings
        self.running = self.run(start_server(self.app, "127.0.0.1:0"))
        return self

    @property
    def port(self) -> int:
        assert self.running is not None
        return self.running.port

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self, grace: float = 0.5) -> None:
        if self.running is not None:
            self.run(self.running.stop(grace))
            self.running = None
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
