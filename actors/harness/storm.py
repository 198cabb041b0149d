"""A storm's harness, as a test program runs one: the SIGKILLs it sends and what it does with the pidfds.

Not Android: the real-kernel harness (and the published storm measurements)
kill a set of processes from one thread, all at once or back to back, and
may call process_mrelease() on each from threads of their own.
"""

from __future__ import annotations

import collections
from typing import Any, Callable, Iterator

from actors.cpu.scheduler import Scheduler, Thread
from actors.cpu.work import Compute, Marker, Step
from actors.kernel.kernel import Kernel
from actors.kernel.process import Process, process_mrelease
from actors.runtime.actor import Actor


class SimultaneousKill(Actor):
    """SIGKILLs a set of processes together at one instant (a storm, as in a test harness); ``on_sent()`` runs
    after the last."""

    def __init__(self, name: str, targets: list[Process], at_ns: int,
                 on_sent: Callable[[], None] | None = None) -> None:
        super().__init__(name)
        self.targets = targets
        self.at_ns = at_ns
        self.on_sent = on_sent

    async def main(self) -> None:
        await self.sleep_until(self.at_ns)
        for proc in self.targets:
            proc.kill()
        if self.on_sent is not None:
            self.on_sent()


class KillSender(Actor):
    """A thread that SIGKILLs a set of processes back to back from ``at_ns``, ``kill_ns`` of its CPU each (a
    test harness's main thread at SCHED_FIFO, as lmkd's sends its kills).

    Being on a core while it sends them is what matters: the victims it wakes
    find that core busy, and a thread it starts after the last kill
    (``on_sent()``) goes elsewhere.
    """

    passive = True

    def __init__(self, name: str, scheduler: Scheduler, targets: list[Process], at_ns: int, kill_ns: int,
                 thread_kw: dict[str, Any], on_sent: Callable[[], None] | None = None) -> None:
        super().__init__(name)
        if kill_ns <= 0 or at_ns < 0:
            raise ValueError(f"{name}: the cost of a kill must be > 0 and its start >= 0")
        self.scheduler = scheduler
        self.targets = targets
        self.at_ns = at_ns
        self.kill_ns = kill_ns
        self.on_sent = on_sent
        self.thread: Thread = scheduler.spawn(name, self, on_marker=self._kill, **thread_kw)

    def on_start(self) -> None:
        self.runtime.at(self.at_ns, self._begin)

    def _begin(self, _arg: object) -> None:
        self.scheduler.submit(self.thread, self._program())

    def _program(self) -> Iterator[Step]:
        frame = (self.name, "pidfd_send_signal")
        for i in range(len(self.targets)):
            yield Compute(self.kill_ns, frame)
            yield Marker("kill", i)

    def _kill(self, _thread: Thread, _label: str, i: int) -> None:
        self.targets[i].kill()
        if i == len(self.targets) - 1 and self.on_sent is not None:
            self.on_sent()


class MreleaseReapers(Actor):
    """Threads that call process_mrelease() on killed processes, each taking the next in kill order.

    A storm's stand-in for lmkd's reaper threads: what a harness does with a
    pidfd per victim after it has sent the SIGKILLs.
    """

    passive = True

    def __init__(self, name: str, kernel: Kernel, count: int, thread_kw: dict[str, Any]) -> None:
        super().__init__(name)
        self.kernel = kernel
        self.threads: list[Thread] = [kernel.scheduler.spawn(f"{name}{i}", self, **thread_kw) for i in range(count)]
        self._idle = list(self.threads)
        self._queue: collections.deque[Process] = collections.deque()
        self.reaps = 0
        self.esrch = 0

    def hand(self, victim: Process) -> None:
        """Queue a just-killed victim; an idle reaper thread starts on the queue."""
        self._queue.append(victim)
        if self._idle:
            th = self._idle.pop(0)
            self.kernel.scheduler.submit(th, self._work(), lambda _done, th=th: self._idle.append(th))

    def _work(self) -> Iterator[Step]:
        while self._queue:
            reaped = yield from process_mrelease(self.kernel, self._queue.popleft(), self.log)
            if reaped:
                self.reaps += 1
            else:
                self.esrch += 1
