"""The kernel side of a device: memory, locks, kswapd, and the paths that use them.

Global locks (a zsmalloc size class, the swap device lock) exist once;
process-scope locks (a memcg LRU lock) exist per mm and are named
``lock/pid``; range-scope locks (the PTE lock, a swap cluster lock) exist per
mm and walker: ``lock/pid`` for the exit, ``lock/pid/reap`` for reapers,
``lock/pid/kworker`` for deferred release. Every mm has its
``mmap_lock/pid`` (an rwsem).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Iterator

from actors.cpu.scheduler import Scheduler, Thread
from actors.cpu.work import COND_RESCHED, Step
from actors.kernel.exit_path import (ExitPlans, PathPlan, StepCompiler, SwapRelease, SynchronousRelease, ZapWork,
    exit_program, reap_program)
from actors.kernel.memory import MM, Memory, allocation
from actors.kernel.profiles import DeviceCosts, KernelProfile
from actors.messages import WakeKswapd
from actors.runtime.actor import Actor

if TYPE_CHECKING:
    from actors.kernel.oom_kill import OomKiller
    from actors.kernel.oom_reaper import OomReaper


#: walkers of an mm besides its exit, each with its own instances of range-scope locks
WALKERS = ("reap", "kworker")


class Kernel:
    def __init__(self, scheduler: Scheduler, memory: Memory, profile: KernelProfile, costs: DeviceCosts, *,
                 wq_unbound_cpumask: list[int], oom_reaper_cpus: list[int]) -> None:
        self.scheduler = scheduler
        #: where unbound workqueues' kworkers may run (wq_unbound_cpumask: all CPUs unless the device narrows it)
        self.wq_unbound_cpumask = wq_unbound_cpumask
        #: where the oom_reaper kthread(s) may run
        self.oom_reaper_cpus = oom_reaper_cpus
        self.memory = memory
        self.profile = profile
        self.costs = costs
        for name, spec in profile.locks.items():
            if spec.scope == "global":
                scheduler.add_lock(name, spec.kind, self._transfer_ns(name))
        self.plans = ExitPlans(profile, costs)
        #: kswapd, once assembly connects it; and whether it has been woken and not gone back to sleep
        self.kswapd: Kswapd | None = None
        self.kswapd_awake = False
        self._compilers: dict[tuple[int, str], StepCompiler] = {}
        #: the swap-release policy (by default the kernel as it is: the zapper frees each entry)
        self.swap_release: SwapRelease = SynchronousRelease()
        #: the OOM killer and the oom_reaper serving its list, once assembly adds them (none: running out of
        #: memory is an error)
        self.oom_killer: OomKiller | None = None
        self.oom_reaper: OomReaper | None = None

    def wakeup_kswapd(self) -> None:
        """mm/vmscan.c wakeup_kswapd(): wake kswapd unless it is awake already (its waitqueue is empty)."""
        if self.kswapd is not None and not self.kswapd_awake:
            self.kswapd_awake = True
            self.scheduler.runtime.post(self.kswapd, WakeKswapd())

    def _transfer_ns(self, name: str) -> int:
        return round(self.profile.locks[name].lines * self.costs.cacheline_transfer_ns)

    def lock_names(self, mm: MM, walker: str = "") -> dict[str, str]:
        """Profile lock → scheduler lock for ``mm``, as the exit (``walker`` "") or another walker takes it."""
        names = {}
        for name, spec in self.profile.locks.items():
            if spec.scope == "global":
                names[name] = name
            elif spec.scope == "range" and walker:
                names[name] = f"{name}/{mm.pid}/{walker}"
            else:
                names[name] = f"{name}/{mm.pid}"
        return names

    def compiler(self, mm: MM, walker: str = "") -> StepCompiler:
        """The (cached) step compiler for paths on ``mm``, taking locks as ``walker`` (see lock_names)."""
        key = (mm.pid, walker)
        comp = self._compilers.get(key)
        if comp is None:
            comp = self._compilers[key] = StepCompiler(self.plans, self.lock_names(mm, walker))
        return comp

    @staticmethod
    def mmap_lock(mm: MM) -> str:
        return f"mmap_lock/{mm.pid}"

    def add_mm(self, mm: MM, anon: int, file: int, swap: int) -> None:
        self.memory.add(mm, anon, file, swap)
        self.scheduler.add_lock(self.mmap_lock(mm), "rwsem")
        for name, spec in self.profile.locks.items():
            if spec.scope != "global":
                self.scheduler.add_lock(f"{name}/{mm.pid}", spec.kind, self._transfer_ns(name))
            if spec.scope == "range":
                for walker in WALKERS:
                    self.scheduler.add_lock(f"{name}/{mm.pid}/{walker}", spec.kind, self._transfer_ns(name))

    def teardown(self, mm: MM, on_freed: Callable[[], None]) -> ZapWork:
        """A SIGKILLed mm: no longer reclaimed, its PTEs to be zapped by the exit and any reaper."""
        self.memory.kill(mm)
        return ZapWork(mm, self.memory, self.plans.chunk_entries, on_freed)

    def exit_program(self, zap: ZapWork) -> Iterator[Step]:
        return exit_program(zap, self.plans, self.compiler(zap.mm), self.mmap_lock(zap.mm), self.swap_release)

    def reap_program(self, zap: ZapWork, reaper: str) -> Iterator[Step]:
        """``reaper`` is ``process_mrelease`` or ``oom_reaper`` (which frames the work is under)."""
        return reap_program(zap, self.plans.reap[reaper], self.compiler(zap.mm, "reap"),
                            self.mmap_lock(zap.mm), self.plans.tlb_batch_pages, self.plans.chunks_per_table,
                            self.swap_release)

    def reclaim_steps(self, pages: int, victim: MM, plan: PathPlan) -> tuple[Step, ...]:
        """The CPU work of compressing ``pages`` anon pages of ``victim`` into ZRAM (shrink_folio_list →
        zram_write_page); the pages move when it is done (:meth:`Memory.swap_out`)."""
        return self.compiler(victim).whole(plan, pages)

    def allocate(self, mm: MM, pages: int, who: str) -> Iterator[Step]:
        """Steps of allocating ``pages`` to ``mm`` in a thread of class ``who``, with direct reclaim below min."""
        compiler = self.compiler(mm)
        alloc_page = self.plans.alloc_page
        compress = self.plans.compress_direct
        oom = self.oom_killer
        return allocation(self.memory, mm, pages, self.profile.alloc.batch_pages, self.profile.reclaim.batch_pages,
                          lambda k, victim: self.reclaim_steps(k, victim, compress),
                          lambda n: compiler.whole(alloc_page, n), who,
                          None if oom is None else lambda m: oom.out_of_memory(m, who))


#: the kernel's global cgroup mutex: cgroup migrations and cgroup.kill writes take it
CGROUP_MUTEX = "cgroup_mutex"

#: the accounting class of kswapd
KSWAPD_CLASS = "kswapd"


class Kswapd(Actor):
    """kswapd: woken when free memory falls below the low watermark (a WakeKswapd), reclaims up to high.

    Assembly connects it: ``kernel.kswapd = kswapd`` and ``memory.low.connect(kernel.wakeup_kswapd)``."""

    def __init__(self, name: str, kernel: Kernel, thread_kw: dict[str, Any]) -> None:
        super().__init__(name)
        self.kernel = kernel
        self.thread: Thread = kernel.scheduler.spawn(name, self, **thread_kw)


    def _balance(self) -> Iterator[Step]:
        memory = self.kernel.memory
        rc = self.kernel.profile.reclaim
        while memory.free < memory.wmark_high:
            victim = memory.reclaim_victim()
            if victim is None:
                self.log("kswapd_gave_up", free=memory.free, high=memory.wmark_high)
                return
            pages = memory.reclaimable(victim, rc.batch_pages)
            yield self.kernel.reclaim_steps(pages, victim, self.kernel.plans.compress_kswapd)
            memory.swap_out(victim, pages)
            yield COND_RESCHED  # shrink_folio_list() between folios

    async def main(self) -> None:
        while True:
            await self.receive()
            self.log("kswapd_wake", free_pages=self.kernel.memory.free)
            await self.kernel.scheduler.execute(self.thread, self._balance())
            self.kernel.kswapd_awake = False
            self.log("kswapd_sleep", free_pages=self.kernel.memory.free)
