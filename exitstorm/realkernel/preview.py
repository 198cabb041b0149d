"""A periodic "preview" process on the real machine (SCHED_FIFO, or fair at a nice), timing its frames.

The shape of a camera preview thread, as the simulator's periodic threads
have it: frame ``k`` is released at ``start + k x period``, burns a fixed
budget of CPU time (a busy loop on the thread's CPU clock, so preemption
makes it finish later instead of eating into it) and is due one period after
its release; a frame that overruns delays the next (none is skipped). It
runs in its own process, so that the harness's Python threads never hold it
up (nor the GIL), and dies with its parent. It reports the scheduling it ran
with, read back, beside its frames.
"""

from __future__ import annotations

import json
import os
import select
import time
from types import TracebackType

from attrs import frozen

from actors.runtime.quantities import NS_PER_S
from exitstorm.lifecycle import held_signals
from exitstorm.realkernel.victims import fork_child, kill_and_wait
from exitstorm.realkernel.zram import HostError

#: (k, release ns, done ns) on CLOCK_MONOTONIC
Frame = tuple[int, int, int]


@frozen
class PreviewRun:
    """The preview's frames and the scheduling its process had (read back after the last frame)."""

    #: SCHED_FIFO or SCHED_OTHER
    policy: str
    #: the SCHED_FIFO priority (0 for SCHED_OTHER)
    prio: int
    nice: int
    frames: list[Frame]


def _frames(period_ns: int, budget_ns: int, count: int, start_ns: int) -> list[Frame]:
    done = []
    for k in range(count):
        release = start_ns + k * period_ns
        wait = release - time.monotonic_ns()
        if wait > 0:
            time.sleep(wait / NS_PER_S)
        until = time.thread_time_ns() + budget_ns
        while time.thread_time_ns() < until:
            pass
        done.append((k, release, time.monotonic_ns()))
    return done


_POLICIES = {os.SCHED_FIFO: "SCHED_FIFO", os.SCHED_OTHER: "SCHED_OTHER"}


def _schedule(prio: int | None, nice: int) -> None:
    """SCHED_FIFO at ``prio``, or with None SCHED_OTHER at ``nice``."""
    if prio is None:
        os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
        os.setpriority(os.PRIO_PROCESS, 0, nice)
    else:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(prio))


def _child(period_ns: int, budget_ns: int, count: int, start_ns: int, prio: int | None, nice: int,
           out_fd: int) -> None:
    try:
        _schedule(prio, nice)
    except OSError as exc:
        wanted = f"SCHED_OTHER at nice {nice}" if prio is None else f"SCHED_FIFO {prio}"
        os.write(out_fd, json.dumps({"error": f"{wanted}: {exc}"}).encode())
        return
    frames = _frames(period_ns, budget_ns, count, start_ns)
    policy = os.sched_getscheduler(0)
    data = json.dumps({"policy": _POLICIES.get(policy, str(policy)), "prio": os.sched_getparam(0).sched_priority,
                       "nice": os.getpriority(os.PRIO_PROCESS, 0), "frames": frames}).encode()
    while data:
        data = data[os.write(out_fd, data):]


class Preview:
    """Context manager: a preview process releasing ``count`` frames from ``start_ns``, as SCHED_FIFO at
    ``prio`` or, with ``prio`` None, SCHED_OTHER at ``nice``; :meth:`run` waits for them. It is killed on every
    way out."""

    def __init__(self, period_ns: int, budget_ns: int, count: int, start_ns: int, prio: int | None,
                 nice: int = 0) -> None:
        self.period_ns = period_ns
        self.budget_ns = budget_ns
        self.count = count
        self.start_ns = start_ns
        self.prio = prio
        self.nice = nice
        self._pid: int | None = None
        self._fd: int | None = None

    def __enter__(self) -> Preview:
        with held_signals():
            self._pid, self._fd = fork_child(
                lambda out_fd: _child(self.period_ns, self.budget_ns, self.count, self.start_ns, self.prio,
                                      self.nice, out_fd))
        return self

    def run(self, timeout_s: float) -> PreviewRun:
        """Every frame, once the last one is done (a HostError if the process failed or is late)."""
        chunks = []
        deadline = time.monotonic() + timeout_s
        while True:
            ready, _, _ = select.select([self._fd], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                raise HostError(f"the preview process did not finish its {self.count} frames in {timeout_s:.0f} s")
            chunk = os.read(self._fd, 1 << 16)
            if not chunk:
                break
            chunks.append(chunk)
        self._close()
        try:
            result = json.loads(b"".join(chunks) or b"{}")
        except ValueError:
            result = {}
        if "frames" not in result:
            raise HostError(f"the preview process failed: {result.get('error', 'no frames reported')}")
        return PreviewRun(result["policy"], result["prio"], result["nice"], [tuple(f) for f in result["frames"]])

    def _close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self._pid is not None:
            kill_and_wait(self._pid)
            self._pid = None

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._close()
