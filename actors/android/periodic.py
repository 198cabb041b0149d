"""A periodic thread: a fixed CPU budget every period, with deadline tracking.

This is the shape of a camera preview or a render thread: frame ``k`` is
released at ``start + k * period`` and is due one period later. The whole
frame loop is one endless work program, so the scheduler runs it without
waking the actor; frame completions reach the actor through a marker hook.
A frame that overruns delays the next one (no frame is skipped).
"""

from __future__ import annotations

from typing import Any, Callable, Iterator

from actors.cpu.scheduler import Scheduler, Thread
from actors.cpu.work import Compute, Marker, SleepUntil, Step
from actors.messages import PreviewStart
from actors.runtime.actor import Actor


class PeriodicThread(Actor):
    """Runs ``budget_ns`` of work every ``period_ns`` from ``start_ns`` on one thread.

    With ``start_ns=None`` the thread waits for a PreviewStart (a preview
    starts when its camera is ready). ``on_frame(k, release_ns, done_ns)`` is
    called as each frame completes.
    """

    def __init__(
        self,
        name: str,
        scheduler: Scheduler,
        *,
        period_ns: int,
        budget_ns: int,
        start_ns: int | None,
        thread_kw: dict[str, Any],
        on_frame: Callable[[int, int, int], None],
        frame: tuple[str, ...] = (),
    ) -> None:
        super().__init__(name)
        if period_ns <= 0 or budget_ns <= 0 or (start_ns is not None and start_ns < 0):
            raise ValueError(f"{name}: period and budget must be > 0 and start >= 0")
        self.scheduler = scheduler
        self.period_ns = period_ns
        self.budget_ns = budget_ns
        self.start_ns = start_ns
        self.frame = frame or (name,)
        self.on_frame = on_frame
        self.thread: Thread = scheduler.spawn(name, self, on_marker=self._frame_done, **thread_kw)

    def _program(self, start_ns: int) -> Iterator[Step]:
        k = 0
        while True:
            release = start_ns + k * self.period_ns
            yield SleepUntil(release)
            yield Compute(self.budget_ns, self.frame, user=True)
            yield Marker("frame", (k, release))
            k += 1

    def _frame_done(self, _thread: Thread, _label: str, data: tuple[int, int]) -> None:
        k, release = data
        self.on_frame(k, release, self.now)

    def begin(self, start_ns: int) -> None:
        """Release the first frame at ``start_ns``."""
        self.start_ns = start_ns
        self.scheduler.submit(self.thread, self._program(start_ns))

    def on_start(self) -> None:
        if self.start_ns is not None:
            self.begin(self.start_ns)

    async def main(self) -> None:
        if self.start_ns is None:
            start: PreviewStart = await self.receive()
            self.begin(start.start_ns)
