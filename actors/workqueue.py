"""An unbound workqueue: work items run on kworker threads, at most ``max_active`` at once.

alloc_workqueue(WQ_UNBOUND, max_active): items queue in FIFO order and each
runs to completion on a kworker of its own; the kworkers run at the
workqueue's nice value on any allowed CPU. A work item is a work program
(an iterator of steps); its effects (memory returned, say) happen inside it.
"""

from __future__ import annotations

import collections
from typing import Any, Callable, Iterator

from actors.runtime import Actor
from actors.scheduler import Scheduler, Thread
from actors.work import Step, WorkDone

WorkItem = Callable[[], Iterator[Step]]


#: the accounting class of a workqueue's worker threads
KWORKER_CLASS = "kworker"


class Workqueue(Actor):
    passive = True

    def __init__(self, name: str, scheduler: Scheduler, *, max_active: int, thread_kw: dict[str, Any]) -> None:
        super().__init__(name)
        if max_active < 1:
            raise ValueError(f"{name}: max_active must be >= 1, got {max_active}")
        self.scheduler = scheduler
        self.workers: list[Thread] = [
            scheduler.spawn(f"kworker/u:{name}/{i}", self, **thread_kw) for i in range(max_active)
        ]
        self._idle = list(reversed(self.workers))
        self.pending: collections.deque[WorkItem] = collections.deque()
        self.completed = 0

    def queue_work(self, item: WorkItem) -> None:
        """queue_work(): run ``item`` when a kworker is free (at once if one is)."""
        if self._idle:
            self._start(self._idle.pop(), item)
        else:
            self.pending.append(item)

    @property
    def busy(self) -> int:
        return len(self.workers) - len(self._idle)

    def _start(self, worker: Thread, item: WorkItem) -> None:
        self.scheduler.submit(worker, item(), lambda done: self._finished(worker, done))

    def _finished(self, worker: Thread, _done: WorkDone) -> None:
        self.completed += 1
        if self.pending:
            self._start(worker, self.pending.popleft())
        else:
            self._idle.append(worker)
