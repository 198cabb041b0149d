"""An unbound workqueue: work items run on kworker threads, at most ``max_active`` at once.

alloc_workqueue(WQ_UNBOUND, max_active): items queue in FIFO order and each
runs to completion on a kworker; queue_work() wakes an idle kworker with a
:class:`~actors.messages.WorkItem`, and a kworker that finishes an item takes
the next pending one before it goes idle. The kworkers run with the
workqueue's attributes (:class:`WorkqueueAttrs`): its nice (-20 with
WQ_HIGHPRI) on the CPUs of ``wq_unbound_cpumask``. A work item is a work program
(an iterator of steps); its effects (memory returned, say) happen inside it.
"""

from __future__ import annotations

import collections
from typing import Any, Callable, Iterator

from attrs import frozen

from actors.cpu.scheduler import Scheduler, Thread
from actors.cpu.work import Step
from actors.messages import WorkItem
from actors.runtime.actor import Actor, Runtime

Work = Callable[[], Iterator[Step]]


#: the accounting class of a workqueue's worker threads
KWORKER_CLASS = "kworker"
#: the nice of a WQ_HIGHPRI workqueue's workers (kernel/workqueue.c)
HIGHPRI_NICE_LEVEL = -20


@frozen
class WorkqueueAttrs:
    """An unbound workqueue's workqueue_attrs: its workers' nice and the CPUs they may run on."""

    nice: int
    cpus: list[int]

    @classmethod
    def unbound(cls, cpumask: list[int], *, highpri: bool, nice: int) -> "WorkqueueAttrs":
        """alloc_workqueue(WQ_UNBOUND [| WQ_HIGHPRI]) on ``cpumask`` (wq_unbound_cpumask), then ``nice``
        written to its sysfs ``nice`` unless highpri set it."""
        return cls(HIGHPRI_NICE_LEVEL if highpri else nice, list(cpumask))


class Workqueue:
    """The workqueue's pending items and idle list (kernel state, not an actor): the kworkers are actors."""

    def __init__(self, runtime: Runtime, name: str, scheduler: Scheduler, *, max_active: int,
                 attrs: WorkqueueAttrs) -> None:
        if max_active < 1:
            raise ValueError(f"{name}: max_active must be >= 1, got {max_active}")
        self.runtime = runtime
        thread_kw = {"policy": "fair", "nice": attrs.nice, "cpus": attrs.cpus, "thread_class": KWORKER_CLASS}
        self.kworkers = [runtime.add(Kworker(f"kworker/u:{name}/{i}", scheduler, self, thread_kw))
                         for i in range(max_active)]
        #: idle kworkers, the next to wake last: one that finishes goes last (the most recently idle wakes
        #: first, as worker_enter_idle()'s list_add); at the start they are idle in index order, the first last
        self.idle: list[Kworker] = []
        self.pending: collections.deque[Work] = collections.deque()

    def queue_work(self, work: Work) -> None:
        """queue_work(): run ``work`` when a kworker is free (woken at once if one is idle)."""
        if self.idle:
            self.runtime.post(self.idle.pop(), WorkItem(work))
        else:
            self.pending.append(work)

    @property
    def workers(self) -> list[Thread]:
        return [k.thread for k in self.kworkers]

    @property
    def completed(self) -> int:
        return sum(k.completed for k in self.kworkers)

    @property
    def busy(self) -> int:
        return len(self.kworkers) - len(self.idle)


class Kworker(Actor):
    """One kworker of a workqueue: run the item it was woken with, then the pending ones, then idle."""

    def __init__(self, name: str, scheduler: Scheduler, wq: Workqueue, thread_kw: dict[str, Any]) -> None:
        super().__init__(name)
        self.scheduler = scheduler
        self.wq = wq
        self.thread: Thread = scheduler.spawn(name, self, **thread_kw)
        self.completed = 0

    async def _run(self, work: Work) -> None:
        await self.scheduler.execute(self.thread, work())
        self.completed += 1

    async def main(self) -> None:
        pending, idle = self.wq.pending, self.wq.idle
        while pending:
            await self._run(pending.popleft())
        idle.insert(0, self)
        while True:
            item: WorkItem = await self.receive()
            await self._run(item.work)
            while pending:
                await self._run(pending.popleft())
            idle.append(self)
