"""lmkd's reaper threads call process_mrelease() after the kill, as Android ships (docs/domain.md §1)."""

from __future__ import annotations

from actors.android.lmkd import LmkdReaper
from actors.kernel.process import Process
from policies.reap import REAP, ReaperRemedy


@REAP.register("process_mrelease")
class ProcessMrelease(ReaperRemedy):
    """SIGKILL, reprioritise the victim, then process_mrelease(pidfd, 0), which fails with ESRCH if the
    victim's exit has already passed exit_mm."""

    async def handle(self, reaper: LmkdReaper, victim: Process) -> None:
        await reaper.kill(victim)
        await reaper.reprioritise(victim)
        await reaper.mrelease(victim)
