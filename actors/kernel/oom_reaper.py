"""The kernel's oom_reaper: kthread(s) that reap queued victims' memory in their own context.

queue_oom_reaper() arms a timer of OOM_REAPER_DELAY so a victim can exit
by itself first; when it fires the victim goes on oom_reaper_list and a
sleeping kthread is woken (an :class:`~actors.messages.OomReapRequest`).
The kthread zaps what is left of each listed victim's anon and swap
(:func:`actors.kernel.exit_path.reap_program`), from the end of the address space,
while the victim's exit works from the start, until the list is empty, and
sleeps again. One kthread serves the list in FIFO order; ``threads > 1``
models a parallel oom reaper, its kthreads sharing the list.
"""

from __future__ import annotations

import collections
from typing import Any

from actors.cpu.scheduler import Thread
from actors.kernel.kernel import Kernel
from actors.kernel.process import Process
from actors.messages import OomReapRequest
from actors.runtime.actor import Actor, Runtime


#: the accounting class of the oom_reaper kthread(s)
OOM_REAPER_CLASS = "oom_reaper"


class OomReaper:
    """oom_reaper_list and its wait queue (kernel state, not an actor): the kthreads are actors."""

    def __init__(self, runtime: Runtime, name: str, kernel: Kernel, *, threads: int, delay_ns: int,
                 thread_kw: dict[str, Any]) -> None:
        if threads < 1 or delay_ns < 0:
            raise ValueError(f"{name}: needs >= 1 thread and a delay >= 0")
        self.runtime = runtime
        self.delay_ns = delay_ns
        thread_kw = {"cpus": kernel.oom_reaper_cpus, **thread_kw}
        self.kthreads = [runtime.add(OomReaperThread(name if threads == 1 else f"{name}/{i}", kernel, self,
                                                     thread_kw))
                         for i in range(threads)]
        #: kthreads asleep on oom_reaper_wait, the next to wake last: one that falls asleep goes last (the
        #: most recently idle wakes first); at the start they fall asleep in index order, the first last
        self.sleeping: list[OomReaperThread] = []
        self.ready: collections.deque[Process] = collections.deque()

    @property
    def threads(self) -> list[Thread]:
        return [k.thread for k in self.kthreads]

    @property
    def reaped(self) -> int:
        return sum(k.reaped for k in self.kthreads)

    def queue(self, victim: Process, delay_ns: int | None = None) -> None:
        """queue_oom_reaper(): reap ``victim`` after the delay (the kernel's unless given)."""
        delay = self.delay_ns if delay_ns is None else delay_ns
        self.runtime.at(self.runtime.now + delay, self._due, victim)

    def _due(self, victim: Process) -> None:
        """The timer fired: onto the list, and wake a kthread if one sleeps."""
        self.ready.append(victim)
        if self.sleeping:
            self.runtime.post(self.sleeping.pop(), OomReapRequest())


class OomReaperThread(Actor):
    """One oom_reaper kthread: reap the listed victims one by one, sleep when the list is empty."""

    def __init__(self, name: str, kernel: Kernel, oom: OomReaper, thread_kw: dict[str, Any]) -> None:
        super().__init__(name)
        self.kernel = kernel
        self.oom = oom
        self.thread: Thread = kernel.scheduler.spawn(name, self, **thread_kw)
        self.reaped = 0

    async def main(self) -> None:
        ready, sleeping = self.oom.ready, self.oom.sleeping
        while ready:
            await self._reap(ready.popleft())
        sleeping.insert(0, self)
        while True:
            await self.receive()
            while ready:
                await self._reap(ready.popleft())
            sleeping.append(self)

    async def _reap(self, victim: Process) -> None:
        zap = victim.zap
        if zap is None or zap.exhausted:
            self.log("oom_reap_skip", pid=victim.pid)  # MMF_OOM_SKIP: the exit got there first
            return
        self.log("oom_reap_start", pid=victim.pid, thread=self.thread.name)
        await self.kernel.scheduler.execute(self.thread, self.kernel.reap_program(zap, "oom_reaper"))
        self.reaped += 1
        self.log("oom_reap_done", pid=victim.pid, thread=self.thread.name,
                 anon_pages=zap.reaped[0], swap_pages=zap.reaped[1])
