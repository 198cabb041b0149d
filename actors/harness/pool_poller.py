"""A user-space thread polling the ZRAM pool's size until a storm's memory is back.

The real harness sees "memory returned" this way: a SCHED_FIFO thread reads
zram's ``mm_stat`` every half millisecond from the kills on, until the pool
is down by a share of its size. That thread takes CPU from the storm it
watches (on a 2-core VM about a tenth of the core it runs on), and under
``preempt = "none"`` each of its wakeups waits for the victim on its core to
reach a cond_resched(). Modelling it as the thread it is puts both effects
on the simulated side too, and makes the simulated "returned" instant the
poll that first sees the target, as on the real side.
"""

from __future__ import annotations

from typing import Any, Callable, Iterator

from actors.cpu.scheduler import Scheduler, Thread
from actors.cpu.work import Compute, Marker, Sleep, Step
from actors.runtime.actor import Actor


def pool_target(pool: int, watched: int, returned_share: float) -> float:
    """The pool size (pages) at which ``returned_share`` of the ``watched`` part of ``pool`` is back."""
    return pool - returned_share * watched


class PoolPoller(Actor):
    """From :meth:`begin` on: read the pool (``read_ns`` of CPU), sleep ``interval_ns``, again, until ``pool()`` is
    down by ``returned_share`` of what ``watched()`` (the storm's part of it) was at the first read;
    ``returned_at`` is the instant of the read that sees it."""

    passive = True

    def __init__(self, name: str, scheduler: Scheduler, pool: Callable[[], int], watched: Callable[[], int], *,
                 interval_ns: int, read_ns: int, returned_share: float, thread_kw: dict[str, Any]) -> None:
        super().__init__(name)
        if interval_ns <= 0 or read_ns <= 0 or not 0 < returned_share <= 1:
            raise ValueError(f"{name}: interval and read cost must be > 0, the share in (0, 1]")
        self.scheduler = scheduler
        self.pool = pool
        self.watched = watched
        self.interval_ns = interval_ns
        self.read_ns = read_ns
        self.returned_share = returned_share
        self.target: float | None = None
        self.reads = 0
        self.returned_at: int | None = None
        self.thread: Thread = scheduler.spawn(name, self, on_marker=self._read, **thread_kw)

    def begin(self) -> None:
        """Start polling now (the harness starts its sampler once the kills are sent)."""
        self.scheduler.submit(self.thread, self._program())

    def _program(self) -> Iterator[Step]:
        frame = (self.name, "mm_stat_show")
        while True:
            yield Compute(self.read_ns, frame, user=True)
            yield Marker("read")
            if self.returned_at is not None:
                return
            yield Sleep(self.interval_ns, user=True)

    def _read(self, _thread: Thread, _label: str, _data: object) -> None:
        pool = self.pool()
        self.reads += 1
        if self.target is None:
            self.target = pool_target(pool, self.watched(), self.returned_share)
        if pool <= self.target:
            self.returned_at = self.now
