"""Background CPU load: threads alternating CPU bursts and sleeps.

Burst and sleep lengths are exponential with configured means, drawn from
the actor's own random stream, so the load is reproducible per seed and
independent of every other actor. Each thread's whole life is one endless
work program: the scheduler runs it without waking the actor.
"""

from __future__ import annotations

import random
from typing import Any, Iterator

from actors.cpu.scheduler import Scheduler, Thread
from actors.cpu.work import Compute, Sleep, Step
from actors.runtime.actor import Actor
from actors.runtime.quantities import exp_ns


def bursts(rng: random.Random, burst_mean_ns: int, sleep_mean_ns: int, frame: tuple[str, ...]) -> Iterator[Step]:
    """Endless user work: burst ~ Exp(burst_mean), sleep ~ Exp(sleep_mean)."""
    while True:
        yield Compute(max(1, exp_ns(rng, burst_mean_ns)), frame, user=True)
        pause = exp_ns(rng, sleep_mean_ns)
        if pause:
            yield Sleep(pause, user=True)


class CpuLoad(Actor):
    """``count`` threads, each: burst ~ Exp(burst_mean), sleep ~ Exp(sleep_mean), forever."""

    passive = True

    def __init__(
        self,
        name: str,
        scheduler: Scheduler,
        *,
        count: int,
        burst_mean_ns: int,
        sleep_mean_ns: int,
        thread_kw: dict[str, Any],
    ) -> None:
        super().__init__(name)
        if count < 1 or burst_mean_ns <= 0 or sleep_mean_ns < 0:
            raise ValueError(f"{name}: count and burst mean must be > 0, sleep mean >= 0")
        self.scheduler = scheduler
        self.burst_mean_ns = burst_mean_ns
        self.sleep_mean_ns = sleep_mean_ns
        self.threads: list[Thread] = [
            scheduler.spawn(f"{name}/{i}", self, **thread_kw) for i in range(count)
        ]

    def on_start(self) -> None:
        for th in self.threads:
            stream = random.Random(self.rng.getrandbits(64))
            self.scheduler.submit(th, bursts(stream, self.burst_mean_ns, self.sleep_mean_ns, (self.name,)))
