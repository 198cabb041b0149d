"""Shared helpers: a small world of one scheduler whose programs are started at given times."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any, Iterable

import pytest

from actors.runtime import Runtime
from actors.scheduler import CoreSpec, Scheduler, SchedTunables, Thread
from actors.work import Step

MS = 1_000_000
ROOT = Path(__file__).resolve().parent.parent


def exitstorm(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    """Run the ``exitstorm`` command in a separate process, as a user would."""
    return subprocess.run([sys.executable, "-m", "exitstorm.cli", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=300)


class Bench:
    """A runtime with one scheduler; ``start(t, thread, steps)`` schedules a submission."""

    def __init__(self, capacities: Iterable[float], *, slice_ns: int, run_to_parity: bool = True,
                 wakeup_preemption: bool = True, end_ns: int | None = None) -> None:
        self.rt = Runtime(seed=1, end_ns=end_ns)
        tun = SchedTunables(base_slice_ns=slice_ns, tunable_scaling="none",
                            run_to_parity=run_to_parity, wakeup_preemption=wakeup_preemption)
        self.delays: list[tuple[str, int]] = []
        self.sched = self.rt.add(Scheduler("cpu", [CoreSpec(c) for c in capacities], tun,
                                           on_delay=lambda th, d: self.delays.append((th.name, d))))
        self.done: dict[str, Any] = {}

    def thread(self, name: str, policy: str = "fair", **kw: Any) -> Thread:
        return self.sched.spawn(name, None, policy, **kw)

    def start(self, t_ns: int, th: Thread, steps: Iterable[Step]) -> None:
        def submit(_: Any) -> None:
            self.sched.submit(th, list(steps), lambda r: self.done.__setitem__(th.name, r))
        self.rt.at(t_ns, submit)

    def at(self, t_ns: int, fn: Any) -> None:
        self.rt.at(t_ns, lambda _: fn())

    async def run(self) -> None:
        await self.rt.run()


@pytest.fixture
def bench_factory():
    return Bench
