"""What the deferred swap-release remedies share: the split of the swap-entry path, the hand-off, the workqueue.

Both split the kernel's swap-entry path at a frame: the zapper runs the path
up to that frame plus a cheap hand-off per entry, and an unbound workqueue
runs the rest later, at the kworkers' priority, outside the page-table walk
(without the locks in ``drop_locks``), in page-table-sized pieces. Hand-offs
are batched per mm.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Callable, Generator, Iterator

from attrs import field, frozen

from actors.cpu.work import COND_RESCHED, Compute, Step
from actors.kernel.exit_path import PathPlan, PathSteps, ZapPlans, ZapWork, split_index
from actors.kernel.kernel import Kernel
from actors.kernel.profiles import KernelProfile
from actors.kernel.workqueue import Workqueue, WorkqueueAttrs
from actors.runtime.actor import Runtime
from actors.runtime.validators import InvalidValue, in_range, non_negative, refers_to


@frozen
class DeferredParams:
    """Where the swap-entry path splits, what the hand-off costs, and the workqueue."""

    #: the first frame the workqueue runs
    split_frame: str = field(metadata=refers_to("a frame of the kernel's swap-entry path"))
    #: the frame of the zapper's per-entry hand-off
    handoff_frame: str
    #: per entry, at capacity 1.0
    handoff_ns: float = field(validator=non_negative)
    #: locks of the page-table walk the workqueue does not hold
    drop_locks: list[str] = field(metadata=refers_to("locks the kernel holds from split_frame on"))
    #: the workqueue's frames above the split path
    prefix: list[str]
    batch_entries: int = field(validator=in_range(1, 1 << 30))
    max_active: int = field(validator=in_range(1, 512))
    #: WQ_HIGHPRI: the workers run at nice -20 (HIGHPRI_NICE_LEVEL)
    highpri: bool
    #: the workqueue's nice (its sysfs ``nice``) when not highpri
    nice: int = field(validator=in_range(-20, 19))

    def __attrs_post_init__(self) -> None:
        if self.highpri and self.nice != 0:
            raise InvalidValue("nice", "0 with highpri = true (WQ_HIGHPRI sets the workers' nice to -20)", self.nice)


class DeferredRelease(ABC):
    """The machinery both deferred policies share."""

    name: str

    def __init__(self, params: DeferredParams) -> None:
        self.params = params
        self.kernel: Kernel | None = None
        self.wq: Workqueue | None = None
        #: per zapper's plans: its part of the path; per (plans, entries): that part and the hand-off steps
        self._zapper_plans: dict[int, PathPlan] = {}
        self._handoffs: dict[tuple[int, int], tuple[PathPlan, tuple[Step, ...]]] = {}
        self._later: PathPlan | None = None
        self._split = 0
        #: pid → [zap, entries, pool pages] not yet handed to the workqueue
        self.pending: dict[int, list] = {}
        self.deferred_entries = 0
        self.batches = 0

    def install(self, runtime: Runtime, kernel: Kernel) -> None:
        self.kernel = kernel
        path = kernel.profile.exit.swap_entry
        p = self.params
        self._split = split_index(path, p.split_frame)
        seg = path.segments[self._split].frames
        above = frozenset(seg[: seg.index(p.split_frame)])
        self._later = PathPlan(path, kernel.costs.swap_entry_free_ns, tuple(p.prefix), skip=above,
                               part=slice(self._split, None), drop_locks=frozenset(p.drop_locks))
        attrs = WorkqueueAttrs.unbound(kernel.wq_unbound_cpumask, highpri=p.highpri, nice=p.nice)
        self.wq = Workqueue(runtime, self.name, kernel.scheduler, max_active=p.max_active, attrs=attrs)

    def zap_swap(self, steps: PathSteps, plans: ZapPlans, zap: ZapWork, n: int) -> Generator[Step, None, int]:
        if not self._defers(zap, n):
            yield steps.segments(plans.swap_entry, n)
            return n
        plan, handoff = self._zapper_part(plans, n)
        yield steps.segments(plan, n)
        yield handoff
        pool = self._handed_off(zap, n)
        self.deferred_entries += n
        batch = self.pending.setdefault(zap.mm.pid, [zap, 0, 0])
        batch[1] += n
        batch[2] += pool
        if batch[1] >= self.params.batch_entries:
            self._queue(zap.mm.pid)
        return 0

    def zapped(self, zap: ZapWork) -> None:
        self._queue(zap.mm.pid)

    def _zapper_part(self, plans: ZapPlans, n: int) -> tuple[PathPlan, tuple[Step, ...]]:
        """The zapper's part of the path, and the steps handing off ``n`` entries (both cached)."""
        hit = self._handoffs.get((id(plans), n))
        if hit is None:
            plan = self._zapper_plans.get(id(plans))
            if plan is None:
                plan = self._zapper_plans[id(plans)] = PathPlan(
                    self.kernel.profile.exit.swap_entry, self.kernel.costs.swap_entry_free_ns, plans.prefix,
                    plans.skip, part=slice(0, self._split))
            ns = round(n * self.params.handoff_ns)
            handoff = (Compute(ns, plan.segments[-1][0] + (self.params.handoff_frame,)),) if ns else ()
            hit = self._handoffs[(id(plans), n)] = (plan, handoff)
        return hit

    def _queue(self, pid: int) -> None:
        batch = self.pending.pop(pid, None)
        if batch:
            self.batches += 1
            self.wq.queue_work(lambda: self._release(*batch))

    def _release(self, zap: ZapWork, n: int, pool: int) -> Iterator[Step]:
        steps = PathSteps(self.kernel.compiler(zap.mm, "kworker"))
        chunk = self.kernel.plans.chunk_entries
        done = 0
        while done < n:
            m = min(chunk, n - done)
            yield steps.segments(self._later, m)
            yield steps.release()
            self._released(zap, m, pool * (done + m) // n - pool * done // n)
            yield COND_RESCHED  # between chunks, as the zapper's walk
            done += m

    @abstractmethod
    def _defers(self, zap: ZapWork, n: int) -> bool:
        """Whether these ``n`` entries are handed off (else freed synchronously)."""

    @abstractmethod
    def _handed_off(self, zap: ZapWork, n: int) -> int:
        """Memory effect of the hand-off; returns the pool pages the release will return."""

    @abstractmethod
    def _released(self, zap: ZapWork, entries: int, pool: int) -> None:
        """Memory effect of the workqueue's release of ``entries`` (``pool`` pages when deferred)."""


def check_split(params: DeferredParams, kernel: KernelProfile, kernel_name: str,
                known_locks: Callable[[], set[str]]) -> Iterator[tuple[str, str, object]]:
    """The split is at a frame of the kernel's swap-entry path (another kernel's frame would defer nothing),
    and the dropped locks exist: this kernel's or another generation's (one list of parameters serves
    every kernel profile a comparison runs)."""
    path = kernel.exit.swap_entry
    try:
        split_index(path, params.split_frame)
    except ValueError:
        frames = sorted({frame for seg in path.segments for frame in seg.frames})
        yield "split_frame", f"a frame of kernel {kernel_name!r}'s exit.swap_entry path ({', '.join(frames)})", \
            params.split_frame
        return
    known = set(kernel.locks) | known_locks()
    for i, lock in enumerate(params.drop_locks):
        if lock not in known:
            yield f"drop_locks[{i}]", f"a lock of a kernel profile ({', '.join(sorted(known))})", lock
