"""Kill policies: how LMKD's threads kill a victim (docs/design.md §7, axis "how LMKD kills")."""

from __future__ import annotations

from typing import Iterator

from attrs import field, frozen

from actors.lmkd import CGROUP_MUTEX
from actors.process import Process
from actors.runtime import NS_PER_US
from actors.validators import non_negative
from actors.work import Compute, Lock, Step, Unlock


class SigKill:
    """pidfd_send_signal(SIGKILL): a short syscall in the killing thread."""

    def __init__(self, signal_ns: int) -> None:
        self.signal_ns = signal_ns

    def steps(self, victim: Process) -> Iterator[Step]:
        yield Compute(self.signal_ns, ("pidfd_send_signal",))
        victim.signal()


@frozen
class CgroupKillParams:
    """Cost of a cgroup.kill write (µs at capacity 1.0): walk the cgroup, signal each process."""

    kill_us: float = field(validator=non_negative)


class CgroupKill:
    """Write 1 to the app's cgroup.kill: cgroup_kill_write() takes the global cgroup_mutex (docs/domain.md §4.4).

    cgroup_mutex is a sleeping lock that every cgroup migration also takes
    (lmkd's own reprioritisation, ActivityManager moving processes), so the
    kill waits behind them when they hold it.
    """

    def __init__(self, params: CgroupKillParams) -> None:
        self.kill_ns = round(params.kill_us * NS_PER_US)

    def steps(self, victim: Process) -> Iterator[Step]:
        yield Lock(CGROUP_MUTEX, ("cgroup_kill_write", "cgroup_kn_lock_live"))
        yield Compute(self.kill_ns, ("cgroup_kill_write", "__cgroup_kill"))
        victim.signal()
        yield Unlock(CGROUP_MUTEX)
