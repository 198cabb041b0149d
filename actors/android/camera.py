"""A camera cold launch: an allocation burst in the camera's threads, then the preview.

The launch allocates ``alloc_pages`` over ``window_ns`` in ``steps`` equal
steps, split across the launch threads (app, camera provider HAL); each
step is due at its point in the window and runs late if the thread stalls.
Below the min watermark the launch threads reclaim directly, in their own
context. When every launch thread is done (their WorkDone messages), the camera
sends its preview thread a PreviewStart.
"""

from __future__ import annotations

from typing import Any, Callable, Iterator

from actors.android.periodic import PeriodicThread
from actors.cpu.scheduler import Thread
from actors.cpu.work import SleepUntil, Step, WorkDone
from actors.kernel.kernel import Kernel
from actors.kernel.memory import MM
from actors.messages import PreviewStart
from actors.runtime.actor import Actor
from actors.runtime.quantities import apportion


class CameraLaunch(Actor):
    """``on_ready(t_ns)`` is called when the allocation is done and the preview is sent its start."""

    def __init__(self, name: str, kernel: Kernel, mm: MM, *, launch_ns: int, alloc_pages: int, window_ns: int,
                 steps: int, threads: int, thread_kw: dict[str, Any], preview: PeriodicThread, preview_delay_ns: int,
                 on_ready: Callable[[int], None]) -> None:
        super().__init__(name)
        if steps < 1 or threads < 1 or window_ns < 0 or launch_ns < 0 or preview_delay_ns < 0:
            raise ValueError(f"{name}: needs steps and threads >= 1, and non-negative times")
        self.kernel = kernel
        self.mm = mm
        self.launch_ns = launch_ns
        self.alloc_pages = alloc_pages
        self.window_ns = window_ns
        self.steps = steps
        self.preview = preview
        self.preview_delay_ns = preview_delay_ns
        self.on_ready = on_ready
        self.threads: list[Thread] = [
            kernel.scheduler.spawn(f"{name}/launch{i}", self, **thread_kw) for i in range(threads)
        ]
        self.ready_at: int | None = None

    def _launch(self, index: int, who: str) -> Iterator[Step]:
        lo, hi = apportion(self.alloc_pages, len(self.threads), index)
        for i in range(self.steps):
            yield SleepUntil(self.launch_ns + self.window_ns * i // self.steps)
            a, b = apportion(hi - lo, self.steps, i)
            if b > a:
                yield from self.kernel.allocate(self.mm, b - a, who)

    def on_start(self) -> None:
        for i, th in enumerate(self.threads):
            self.kernel.scheduler.start(th, self._launch(i, th.thread_class))

    async def main(self) -> None:
        for _ in self.threads:
            done = await self.receive()
            if type(done) is not WorkDone:
                raise TypeError(f"{self.name}: unexpected message {done!r}")
        self.ready_at = self.now
        self.log("camera_ready", allocated_pages=self.alloc_pages, free_pages=self.kernel.memory.free)
        self.send(to=self.preview, message=PreviewStart(self.now + self.preview_delay_ns))
        self.on_ready(self.now)
