"""Write 1 to the app's cgroup.kill instead of signalling its process (docs/domain.md §4.4)."""

from __future__ import annotations

from typing import Iterator

from attrs import field, frozen

from actors.cpu.work import Compute, Lock, Step, Unlock
from actors.kernel.kernel import CGROUP_MUTEX
from actors.kernel.process import Process
from actors.runtime.quantities import InNs
from actors.runtime.validators import non_negative
from policies.kill import KILL


@frozen
class CgroupKillParams:
    """Cost of a cgroup.kill write (µs at capacity 1.0): walk the cgroup, signal each process."""

    kill_us: float = field(validator=non_negative)

    kill_ns = InNs("kill_us")


@KILL.register("cgroup_kill", params=CgroupKillParams)
class CgroupKill:
    """cgroup_kill_write() takes the global cgroup_mutex.

    cgroup_mutex is a sleeping lock that every cgroup migration also takes
    (lmkd's own reprioritisation, ActivityManager moving processes), so the
    kill waits behind them when they hold it.
    """

    def __init__(self, params: CgroupKillParams, *, signal_ns: int = 0) -> None:
        self.kill_ns = params.kill_ns

    def steps(self, victim: Process) -> Iterator[Step]:
        yield Lock(CGROUP_MUTEX, ("cgroup_kill_write", "cgroup_kn_lock_live"))
        yield Compute(self.kill_ns, ("cgroup_kill_write", "__cgroup_kill"))
        victim.signal()
        yield Unlock(CGROUP_MUTEX)
