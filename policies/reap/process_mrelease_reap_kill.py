"""process_mrelease(pidfd, PROCESS_MRELEASE_REAP_KILL): lmkd's reaper kills and reaps in one call.

Minchan Kim's 2026 patch ("mm: process_mrelease: introduce
PROCESS_MRELEASE_REAP_KILL flag") lets the syscall send the SIGKILL itself:
it takes a reference on the victim's mm before it signals, so the victim
cannot pass exit_mm() first and the reap never fails with ESRCH. Without the
flag, lmkd's reaper signals, then moves the victim's cgroup and priority
(under cgroup_mutex), then calls process_mrelease(), and a victim that ran in
between has taken its mm away.

Here the reaper's call costs pidfd_send_signal()'s (lmkd.costs.signal_us)
plus the reap, and the reaper reprioritises the victim after it, for the
rest of its exit. The kill policy is not used by a reaper that does this (the
kernel sends the signal); lmkd's main thread, killing when every reaper is
busy, still uses it.
"""

from __future__ import annotations

from typing import Iterator

from actors.android.lmkd import LmkdReaper
from actors.cpu.work import Compute, Step
from actors.kernel.process import Process
from policies.reap import REAP, ReaperRemedy


@REAP.register("process_mrelease_reap_kill")
class ProcessMreleaseReapKill(ReaperRemedy):
    async def handle(self, reaper: LmkdReaper, victim: Process) -> None:
        await reaper.run(self._signal(reaper, victim))
        await reaper.run(self._reap(reaper, victim))
        await reaper.reprioritise(victim)

    @staticmethod
    def _signal(reaper: LmkdReaper, victim: Process) -> Iterator[Step]:
        """find_lock_task_mm(), mmgrab(), then the SIGKILL: the mm is the reaper's from here on."""
        yield Compute(reaper.costs.signal_ns, ("process_mrelease", "do_send_sig_info"))
        victim.signal()

    @staticmethod
    def _reap(reaper: LmkdReaper, victim: Process) -> Iterator[Step]:
        zap = victim.zap
        yield from reaper.kernel.reap_program(zap, "process_mrelease")
        reaper.reaps += 1
        reaper.log("process_mrelease", pid=victim.pid, result="ok", flags="REAP_KILL", anon_pages=zap.reaped[0],
                   swap_pages=zap.reaped[1])
