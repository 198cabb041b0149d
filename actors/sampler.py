"""Samples a quantity every period of virtual time (timelines of free memory, ZRAM, PSI)."""

from __future__ import annotations

from typing import Any, Callable

from actors.runtime import Actor


class Sampler(Actor):
    """Calls ``probe()`` at 0, period, 2 x period, ... and keeps ``(t_ns, value)``."""

    passive = True

    def __init__(self, name: str, period_ns: int, probe: Callable[[], Any]) -> None:
        super().__init__(name)
        if period_ns <= 0:
            raise ValueError(f"{name}: sampling period must be > 0")
        self.period_ns = period_ns
        self.probe = probe
        self.samples: list[tuple[int, Any]] = []

    def on_start(self) -> None:
        self.runtime.at(self.now, self._sample)

    def _sample(self, _arg: object = None) -> None:
        self.samples.append((self.now, self.probe()))
        self.runtime.at(self.now + self.period_ns, self._sample)
