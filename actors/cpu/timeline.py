"""What ran where and who waited for what, kept for the run's timeline (trace.json).

The scheduler records a slice each time a thread leaves a core and a wait
each time a lock is handed to a waiter; periodic threads record their
frames. Records are plain tuples appended in virtual-time order of their
*end*, so a cap on their number is a cut in time: when the cap is reached at
``truncated_at``, the timeline holds everything that ended before it and
nothing after, and recording stops (memory stays bounded however long the
run).
"""

from __future__ import annotations

#: (start_ns, end_ns, cpu, tid): a thread ran (or spun) on a core
Ran = tuple[int, int, int, int]
#: (start_ns, end_ns, tid, lock name, lock kind): a thread waited for a lock
Waited = tuple[int, int, int, str, str]
#: (periodic thread name, frame number, release_ns, done_ns, lateness_ns, janky)
FrameSpan = tuple[str, int, int, int, int, bool]


class Timeline:
    """Bounded record of CPU slices, lock waits and frames; ``on`` is False once full (or if off)."""

    def __init__(self, max_records: int) -> None:
        if max_records < 0:
            raise ValueError(f"a timeline cap must be >= 0, got {max_records}")
        self.max_records = max_records
        self.on = max_records > 0
        self.ran: list[Ran] = []
        self.waited: list[Waited] = []
        self.frames: list[FrameSpan] = []
        self.truncated_at: int | None = None

    def _room(self, now: int) -> bool:
        if len(self.ran) + len(self.waited) + len(self.frames) < self.max_records:
            return True
        self.on = False
        self.truncated_at = now
        return False

    def add_ran(self, start: int, end: int, cpu: int, tid: int) -> None:
        if end > start and self._room(end):
            self.ran.append((start, end, cpu, tid))

    def add_wait(self, start: int, end: int, tid: int, lock: str, kind: str) -> None:
        if self._room(end):
            self.waited.append((start, end, tid, lock, kind))

    def add_frame(self, name: str, k: int, release_ns: int, done_ns: int, lateness_ns: int, janky: bool) -> None:
        if self._room(done_ns):
            self.frames.append((name, k, release_ns, done_ns, lateness_ns, janky))
