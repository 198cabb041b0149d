"""Time the tick's interrupt takes from a busy core: run-to-run variation from a measured source.

Every ``tick_ns`` (1 s / HZ, the same instants on every CPU: the kernel does
not skew ticks by default) a busy core spends a few microseconds in the
timer interrupt and the softirqs it raises (scheduler_tick, RCU, timers),
during which its thread makes no progress. The duration of each is drawn,
tick by tick, from the core's own random stream, uniform between ``min_ns``
and ``max_ns`` (a measured range, device TOML ``[tick_interrupt]``), so
storms with different seeds drift apart the way real ones do. An idle core
is tickless (NO_HZ_IDLE): a window that falls in an idle stretch takes
nothing, but it is drawn all the same, so that a core's k-th tick costs the
same whatever ran before.

The scheduler folds the stolen time into its arithmetic instead of making
an event of every interrupt: a segment's end is moved later by the windows
it contains, and accounting counts the windows' time as the ``irq`` class.
"""

from __future__ import annotations

import collections
import random

#: the accounting class of interrupt time
IRQ_CLASS = "irq"


class TickInterrupts:
    """One core's tick-interrupt windows ``[start, end)``, drawn lazily in tick order."""

    __slots__ = ("tick_ns", "phase_ns", "min_ns", "max_ns", "rng", "windows", "next_tick")

    def __init__(self, tick_ns: int, phase_ns: int, min_ns: int, max_ns: int, rng: random.Random) -> None:
        if not 0 < min_ns <= max_ns < tick_ns:
            raise ValueError("tick interrupt durations must be > 0 and shorter than a tick")
        self.tick_ns = tick_ns
        self.phase_ns = phase_ns
        self.min_ns = min_ns
        self.max_ns = max_ns
        self.rng = rng
        self.windows: collections.deque[tuple[int, int]] = collections.deque()
        self.next_tick = phase_ns

    def _draw(self) -> None:
        start = self.next_tick
        self.next_tick = start + self.tick_ns
        self.windows.append((start, start + self.rng.randint(self.min_ns, self.max_ns)))

    def first_start(self) -> int:
        """Where the first window not yet wholly accounted for begins."""
        if not self.windows:
            self._draw()
        return self.windows[0][0]

    def take(self, since: int, until: int) -> int:
        """Interrupt time within ``[since, until)`` of a busy core; windows that end by ``until`` are done."""
        windows = self.windows
        stolen = 0
        while True:
            if not windows:
                self._draw()
            start, end = windows[0]
            if start >= until:
                return stolen
            lo = start if start > since else since
            hi = end if end < until else until
            if hi > lo:
                stolen += hi - lo
            if end > until:
                return stolen
            windows.popleft()

    def end_after(self, start: int, work_ns: int) -> int:
        """When ``work_ns`` of running from ``start`` is done, the windows on the way included."""
        end = start + work_ns
        i = 0
        windows = self.windows
        while True:
            while i >= len(windows):
                self._draw()
            w_start, w_end = windows[i]
            if w_start >= end:
                return end
            lo = w_start if w_start > start else start
            if w_end > lo:
                end += w_end - lo
            i += 1
