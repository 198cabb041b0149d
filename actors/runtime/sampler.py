"""Samples a quantity every period of virtual time (timelines of free memory, ZRAM, PSI, CPU by class)."""

from __future__ import annotations

from typing import Any, Callable

from actors.runtime.actor import Actor


class Sampler(Actor):
    """Calls ``probe()`` at 0, period, 2 x period, ... and keeps ``(t_ns, value)``, at most ``max_samples``.

    When one more would be kept, every other sample is dropped and the period
    doubles: a long run's timeline gets coarser, never longer, and its
    samples stay evenly spaced from 0. ``on_sample(t_ns, value)`` sees every
    sample as it is taken, before any is dropped (a figure that needs the
    finest period, such as a peak, is computed there).
    """

    def __init__(self, name: str, period_ns: int, probe: Callable[[], Any], max_samples: int,
                 on_sample: Callable[[int, Any], None] | None = None) -> None:
        super().__init__(name)
        if period_ns <= 0:
            raise ValueError(f"{name}: sampling period must be > 0")
        if max_samples < 2:
            raise ValueError(f"{name}: at least 2 samples must be kept")
        self.period_ns = period_ns
        self.probe = probe
        #: even, so that the sample that overflows is one of those kept
        self.max_samples = max_samples - max_samples % 2
        self.on_sample = on_sample
        self.samples: list[tuple[int, Any]] = []

    async def main(self) -> None:
        while True:
            self._sample()
            await self.sleep_until(self.now + self.period_ns)

    def _sample(self) -> None:
        value = self.probe()
        if self.on_sample is not None:
            self.on_sample(self.now, value)
        self.samples.append((self.now, value))
        if len(self.samples) > self.max_samples:
            del self.samples[1::2]
            self.period_ns *= 2
