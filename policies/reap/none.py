"""No reaping: lmkd's reaper threads only kill and reprioritise; the exit frees everything itself."""

from __future__ import annotations

from actors.android.lmkd import LmkdReaper
from actors.kernel.process import Process
from policies.reap import REAP, ReaperRemedy


@REAP.register("none")
class NoReap(ReaperRemedy):
    async def handle(self, reaper: LmkdReaper, victim: Process) -> None:
        await reaper.kill(victim)
        await reaper.reprioritise(victim)
