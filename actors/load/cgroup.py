"""Background users of cgroup_mutex: system threads migrating tasks between cgroups.

ActivityManager and task profiles move processes between cgroups all the
time, and more so while an app launches (JoinCgroup, writes to
cgroup.procs); each migration takes the global cgroup_mutex (docs/domain.md
§4.4). Each thread waits an exponential interval, then holds the mutex for
an exponential time; both from the actor's own random stream.
"""

from __future__ import annotations

import random
from typing import Any, Iterator

from actors.cpu.scheduler import Scheduler, Thread
from actors.cpu.work import Compute, Lock, Sleep, Step, Unlock
from actors.kernel.kernel import CGROUP_MUTEX
from actors.runtime.actor import Actor
from actors.runtime.quantities import exp_ns

FRAME_LOCK = ("cgroup_procs_write", "cgroup_kn_lock_live")
FRAME_MIGRATE = ("cgroup_procs_write", "cgroup_migrate")


class CgroupMigrations(Actor):
    passive = True

    def __init__(self, name: str, scheduler: Scheduler, *, threads: int, interval_mean_ns: int, hold_mean_ns: int,
                 thread_kw: dict[str, Any]) -> None:
        super().__init__(name)
        if threads < 0 or interval_mean_ns <= 0 or hold_mean_ns <= 0:
            raise ValueError(f"{name}: needs threads >= 0 and positive means")
        self.scheduler = scheduler
        self.interval_mean_ns = interval_mean_ns
        self.hold_mean_ns = hold_mean_ns
        self.threads: list[Thread] = [scheduler.spawn(f"{name}/{i}", self, **thread_kw) for i in range(threads)]

    def _program(self, rng: random.Random) -> Iterator[Step]:
        while True:
            yield Sleep(max(1, exp_ns(rng, self.interval_mean_ns)))
            yield Lock(CGROUP_MUTEX, FRAME_LOCK)
            yield Compute(max(1, exp_ns(rng, self.hold_mean_ns)), FRAME_MIGRATE)
            yield Unlock(CGROUP_MUTEX)

    def on_start(self) -> None:
        for th in self.threads:
            self.scheduler.submit(th, self._program(random.Random(self.rng.getrandbits(64))))
