"""The kernel's oom_reaper: kthread(s) that reap queued victims' memory in their own context.

queue_oom_reaper() arms a timer of OOM_REAPER_DELAY so a victim can exit
by itself first; then the reaper zaps what is left of its anon and swap
(:func:`actors.exit_path.reap_program`), from the end of the address space,
while the victim's exit works from the start. One kthread serves the list
in FIFO order; ``threads > 1`` models a parallel oom reaper.
"""

from __future__ import annotations

import collections
from typing import Any

from actors.kernel import Kernel
from actors.process import Process
from actors.runtime import Actor
from actors.scheduler import Thread


#: the accounting class of the oom_reaper kthread(s)
OOM_REAPER_CLASS = "oom_reaper"


class OomReaper(Actor):
    passive = True

    def __init__(self, name: str, kernel: Kernel, *, threads: int, delay_ns: int, thread_kw: dict[str, Any]) -> None:
        super().__init__(name)
        if threads < 1 or delay_ns < 0:
            raise ValueError(f"{name}: needs >= 1 thread and a delay >= 0")
        self.kernel = kernel
        self.delay_ns = delay_ns
        self.threads: list[Thread] = [
            kernel.scheduler.spawn(name if threads == 1 else f"{name}/{i}", self, **thread_kw)
            for i in range(threads)
        ]
        self._idle = list(reversed(self.threads))
        self.ready: collections.deque[Process] = collections.deque()
        self.reaped = 0

    def queue(self, victim: Process, delay_ns: int | None = None) -> None:
        """queue_oom_reaper(): reap ``victim`` after the delay (the kernel's unless given)."""
        delay = self.delay_ns if delay_ns is None else delay_ns
        self.runtime.at(self.now + delay, self._due, victim)

    def _due(self, victim: Process) -> None:
        self.ready.append(victim)
        self._next()

    def _next(self) -> None:
        while self._idle and self.ready:
            victim = self.ready.popleft()
            zap = victim.zap
            if zap is None or zap.exhausted:
                self.log("oom_reap_skip", pid=victim.pid)  # MMF_OOM_SKIP: the exit got there first
                continue
            th = self._idle.pop()
            self.log("oom_reap_start", pid=victim.pid, thread=th.name)
            self.kernel.scheduler.submit(th, self.kernel.reap_program(zap, "oom_reaper"),
                                         lambda _done, th=th, v=victim: self._done(th, v))

    def _done(self, th: Thread, victim: Process) -> None:
        self.reaped += 1
        zap = victim.zap
        self.log("oom_reap_done", pid=victim.pid, thread=th.name,
                 anon_pages=zap.reaped[0], swap_pages=zap.reaped[1])
        self._idle.append(th)
        self._next()
