"""HealthProbe.check: bounded, and cancellable at every moment (a server stop cancels it)."""

from __future__ import annotations

import asyncio
import time

from sqlalchemy.engine import make_url

from fleet_server.db.session import HealthProbe


def test_a_cancelled_check_is_cancelled_even_when_its_probe_has_just_answered():
    """On Python 3.11 `asyncio.wait_for` swallowed a cancellation that landed as the probe answered:
    the health watch went on, and the server's stop waited for it forever (a rare test hang).
    Cancels land at every step around the answer here; each must end the check as cancelled."""
    probe = HealthProbe(make_url("postgresql+psycopg://nobody@127.0.0.1:1/none"), timeout_s=5)
    probe.ping = lambda: True  # type: ignore[method-assign]  # answers at once, from a thread

    async def scenario() -> list[int]:
        swallowed = []
        for trial in range(400):
            task = asyncio.create_task(probe.check())
            for _ in range(trial % 12):  # let the check get that far before the cancel lands
                await asyncio.sleep(0)
            if task.cancel():  # else it had finished already: nothing to swallow
                try:
                    await task
                except asyncio.CancelledError:
                    pass
                else:
                    swallowed.append(trial)
            await asyncio.sleep(0.002)  # the probe's thread ends: the next check probes again
        return swallowed

    try:
        assert asyncio.run(scenario()) == []
    finally:
        probe.close()


def test_a_probe_without_an_answer_in_time_says_no():
    probe = HealthProbe(make_url("postgresql+psycopg://nobody@127.0.0.1:1/none"), timeout_s=0.2)
    probes = []

    def stuck() -> bool:
        probes.append(time.monotonic())
        time.sleep(1.0)
        return True

    probe.ping = stuck  # type: ignore[method-assign]

    async def scenario() -> tuple[bool, bool]:
        first = await probe.check()
        second = await probe.check()  # the first probe is still stuck: not doubled, still no
        return first, second

    try:
        assert asyncio.run(scenario()) == (False, False)
        assert len(probes) == 1
    finally:
        probe.close()
