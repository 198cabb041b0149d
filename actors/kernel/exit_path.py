"""Work programs of kernel paths built from a kernel profile: exit, reclaim.

An item path (a swap entry, a present page, a file page) is a list of
segments, each a share of the item's cost spent in some frames while holding
some locks. A *chunk* of n items becomes, for each run of segments holding
the same locks: lock transitions (keeping locks that consecutive segments
share, so nesting is the kernel's), then one ``Compute`` of n x cost x the
run's shares, split across its frames. Lock steps stand for ``n x per_item``
kernel acquisitions, which matters for cache-line transfers.
"""

from __future__ import annotations

from typing import Callable, Generator, Iterator, Protocol

from actors.cpu.work import COND_RESCHED, Compute, Lock, Step, Unlock
from actors.kernel.memory import MM, Memory
from actors.kernel.profiles import DeviceCosts, ItemPath, KernelProfile
from actors.runtime.quantities import apportion

Wanted = tuple[tuple[str, str], ...]


class PathPlan:
    """An item path compiled once per kernel: per segment its frames, wanted locks and share.

    ``part`` keeps a slice of the segments (a path split between two
    threads: shares stay fractions of the whole item); ``skip`` drops frames
    the caller does not pass through; ``drop_locks`` drops locks it does not
    hold (a kworker finishing a free outside the page-table walk).
    """

    __slots__ = ("unit_ns", "segments")

    def __init__(self, path: ItemPath, cost_ns: float, prefix: tuple[str, ...], skip: frozenset[str] = frozenset(),
                 part: slice = slice(None), drop_locks: frozenset[str] = frozenset()) -> None:
        self.unit_ns = cost_ns * path.factor
        self.segments: tuple[tuple[tuple[str, ...], Wanted, float], ...] = tuple(
            (prefix + tuple(f for f in seg.frames if f not in skip),
             tuple((name, "write") for name in seg.locks if name not in drop_locks)
             + tuple((name, "read") for name in seg.readers if name not in drop_locks),
             seg.share)
            for seg in path.segments[part]
        )


def split_index(path: ItemPath, frame: str) -> int:
    """Index of the first segment of ``path`` inside ``frame`` (a path's split point)."""
    for i, seg in enumerate(path.segments):
        if frame in seg.frames:
            return i
    raise ValueError(f"no segment of the path runs in {frame!r}")


class ZapPlans:
    """The plans one zapper uses per PTE kind (present anon page, swap entry, file page).

    A present page is zapped in its page table (``present_zap``) and freed
    later, when the zapper's mmu_gather batch is flushed (``present_free``:
    the path from ``exit.tlb_flush_frame`` on).
    """

    __slots__ = ("present_zap", "present_free", "swap_entry", "file_page", "prefix", "skip")

    def __init__(self, profile: KernelProfile, costs: DeviceCosts, prefix: tuple[str, ...],
                 skip: frozenset[str] = frozenset()) -> None:
        ex = profile.exit
        self.prefix = prefix
        self.skip = skip
        flush = split_index(ex.present_page, ex.tlb_flush_frame)
        self.present_zap = PathPlan(ex.present_page, costs.present_page_free_ns, prefix, skip, part=slice(0, flush))
        self.present_free = PathPlan(ex.present_page, costs.present_page_free_ns, prefix, skip,
                                     part=slice(flush, None))
        self.swap_entry = PathPlan(ex.swap_entry, costs.swap_entry_free_ns, prefix, skip)
        self.file_page = PathPlan(ex.file_page, costs.file_page_unmap_ns, prefix, skip)


class ExitPlans:
    """The plans of every path of a kernel profile on one device."""

    def __init__(self, profile: KernelProfile, costs: DeviceCosts) -> None:
        ex = profile.exit
        self.chunk_entries = ex.chunk_entries
        #: chunks per page table: a zapper calls cond_resched() after each table's worth
        self.chunks_per_table = ex.ptes_per_table // ex.chunk_entries
        self.tlb_batch_pages = ex.tlb_batch_pages
        self.fixed_before_mm = PathPlan(ex.fixed_before_mm, costs.exit_fixed_ns, ())
        self.zap = ZapPlans(profile, costs, tuple(ex.prefix))
        self.fixed_after_mm = PathPlan(ex.fixed_after_mm, costs.exit_fixed_ns, ())
        reap = profile.reap
        skip = frozenset(reap.exit_only_frames)
        self.reap = {
            "process_mrelease": ZapPlans(profile, costs, tuple(reap.prefix_mrelease), skip),
            "oom_reaper": ZapPlans(profile, costs, tuple(reap.prefix_oom_reaper), skip),
        }
        rc = profile.reclaim
        self.compress_kswapd = PathPlan(rc.compress_page, costs.compress_page_ns, tuple(rc.prefix_kswapd))
        self.compress_direct = PathPlan(rc.compress_page, costs.compress_page_ns, tuple(rc.prefix_direct))
        self.alloc_page = PathPlan(profile.alloc.page, costs.alloc_page_ns, tuple(profile.alloc.prefix))
        self.per_item = {name: spec.per_item for name, spec in profile.locks.items()}
        self.kinds = {name: spec.kind for name, spec in profile.locks.items()}
        #: spinlocks only one walker ever takes, with no cache-line cost: inside another one they change nothing
        self.private = frozenset(name for name, spec in profile.locks.items()
                                 if spec.scope == "range" and spec.kind == "spin" and not spec.lines)


class StepCompiler:
    """Turns (plan, item count, locks held before) into steps, once: the result is cached.

    ``lock_names`` maps a profile lock to the scheduler's lock (process- and
    range-scope locks are per mm). Consecutive segments holding the same
    locks become one multi-frame :class:`Compute` (one scheduler event), which
    also touches the shared cache lines (``line`` locks) they read. A
    ``private`` spinlock (range scope: one walker takes it; no cache lines)
    nested in another private one is left out: it can neither be contended
    nor cost a transfer, and preemption is already off. Steps are
    immutable, and chunks of one mm mostly have the same counts, so nearly
    every chunk reuses compiled steps.
    """

    def __init__(self, plans: "ExitPlans", lock_names: dict[str, str]) -> None:
        self.per_item = plans.per_item
        self.kinds = plans.kinds
        self.private = plans.private
        self.lock_names = lock_names
        self._cache: dict[tuple[PathPlan, int, tuple[tuple[str, str], ...]],
                          tuple[tuple[Step, ...], tuple[tuple[str, str], ...]]] = {}
        self._whole: dict[tuple[PathPlan, int], tuple[Step, ...]] = {}
        self._release: dict[tuple[tuple[str, str], ...], tuple[Step, ...]] = {}

    def segments(self, plan: PathPlan, n: int, held: tuple[tuple[str, str], ...]
                 ) -> tuple[tuple[Step, ...], tuple[tuple[str, str], ...]]:
        key = (plan, n, held)
        hit = self._cache.get(key)
        if hit is None:
            hit = self._cache[key] = self._compile(plan, n, list(held))
        return hit

    def _groups(self, plan: PathPlan, n: int) -> list[tuple[Wanted, list[tuple[str, str]], list]]:
        """Runs of segments holding the same locks: (locks, lines touched, [(frames, ns)])."""
        groups: list[tuple[Wanted, list[tuple[str, str]], list]] = []
        for frames, wanted, share in plan.segments:
            locks = tuple(w for w in wanted if self.kinds[w[0]] != "line")
            private = [w for w in locks if w[0] in self.private]
            if len(private) > 1:  # one private spinlock already makes the section atomic
                locks = tuple(w for w in locks if w not in private[1:])
            lines = [w for w in wanted if self.kinds[w[0]] == "line"]
            if groups and groups[-1][0] == locks:
                groups[-1][1].extend(w for w in lines if w not in groups[-1][1])
                groups[-1][2].append((frames, round(n * plan.unit_ns * share)))
            else:
                groups.append((locks, lines, [(frames, round(n * plan.unit_ns * share))]))
        return groups

    def _compile(self, plan: PathPlan, n: int, held: list[tuple[str, str]]
                 ) -> tuple[tuple[Step, ...], tuple[tuple[str, str], ...]]:
        steps: list[Step] = []
        names = self.lock_names
        for locks, lines, parts in self._groups(plan, n):
            frames = parts[0][0]
            while held and any(h not in locks for h in held):
                steps.append(Unlock(names[held.pop()[0]]))
            for lock in locks:
                if lock not in held:
                    name, mode = lock
                    steps.append(Lock(names[name], frames, mode=mode, count=self._count(name, n)))
                    held.append(lock)
            touch = tuple((names[name], self._count(name, n)) for name, _mode in lines)
            parts = [(f, ns) for f, ns in parts if ns]
            ns = sum(ns for _f, ns in parts)
            if len(parts) > 1:
                steps.append(Compute(ns, parts[0][0], parts=tuple(parts), touch=touch))
            elif parts or touch:
                steps.append(Compute(ns, parts[0][0] if parts else frames, touch=touch))
        return tuple(steps), tuple(held)

    def _count(self, name: str, n: int) -> int:
        """Kernel acquisitions a step over ``n`` items stands for."""
        return max(1, round(n * self.per_item[name]))

    def whole(self, plan: PathPlan, n: int) -> tuple[Step, ...]:
        """The steps of a path walked from no lock held to no lock held (cached)."""
        hit = self._whole.get((plan, n))
        if hit is None:
            steps, held = self.segments(plan, n, ())
            hit = self._whole[(plan, n)] = steps + self.release(held)
        return hit

    def release(self, held: tuple[tuple[str, str], ...]) -> tuple[Step, ...]:
        hit = self._release.get(held)
        if hit is None:
            hit = self._release[held] = tuple(Unlock(self.lock_names[h[0]]) for h in reversed(held))
        return hit


class PathSteps:
    """The steps of one thread walking paths, tracking which locks it holds between segments."""

    __slots__ = ("compiler", "held")

    def __init__(self, compiler: StepCompiler) -> None:
        self.compiler = compiler
        self.held: tuple[tuple[str, str], ...] = ()

    def segments(self, plan: PathPlan, n: int) -> tuple[Step, ...]:
        steps, self.held = self.compiler.segments(plan, n, self.held)
        return steps

    def release(self) -> tuple[Step, ...]:
        steps = self.compiler.release(self.held)
        self.held = ()
        return steps


def zap_chunks(mm: MM, chunk_entries: int) -> list[tuple[int, int, int]]:
    """(present anon, swap, file) PTEs per page table, the kinds evenly mixed across the VA range."""
    ptes = mm.anon + mm.swap + mm.file
    nchunks = max(1, -(-ptes // chunk_entries))
    chunks = []
    for i in range(nchunks):
        counts = []
        for total in (mm.anon, mm.swap, mm.file):
            lo, hi = apportion(total, nchunks, i)
            counts.append(hi - lo)
        chunks.append((counts[0], counts[1], counts[2]))
    return chunks


class ZapWork:
    """The PTEs of a dying mm still to be zapped, as page-table chunks claimed from either end.

    The exiting task (exit_mmap) claims whole chunks from the start of the
    address space; a reaper (__oom_reap_task_mm) claims the anon and swap
    PTEs of chunks from the end and leaves their file PTEs to the exit
    (docs/domain.md §4.1, §4.5). A claim is taken before its chunk is zapped, so
    no PTE is zapped twice and the total work is the same whoever does it;
    a chunk's swap entries come back when its zap completes, its present
    pages when the zapper's mmu_gather is flushed. ``on_freed`` fires
    once every anon page and swap entry of the mm has been freed.
    """

    def __init__(self, mm: MM, memory: Memory, chunk_entries: int, on_freed: Callable[[], None]) -> None:
        self.mm = mm
        self.memory = memory
        self.chunks = [list(c) for c in zap_chunks(mm, chunk_entries)]
        self.front = 0
        self.back = len(self.chunks) - 1
        self.unfreed = mm.anon + mm.swap
        self.on_freed = on_freed
        #: the exit passed exit_mm (task->mm = NULL): process_mrelease now fails with ESRCH
        self.mm_detached = False
        self.freed = False
        self.reaped = [0, 0]  # anon pages, swap entries zapped by reapers

    @property
    def exhausted(self) -> bool:
        """Every chunk claimed: nothing left for a reaper (exit_mmap has set MMF_OOM_SKIP)."""
        return self.back < self.front

    def claim_front(self) -> tuple[int, int, int] | None:
        if self.front >= len(self.chunks):
            return None
        chunk = self.chunks[self.front]
        self.front += 1
        claim = (chunk[0], chunk[1], chunk[2])
        chunk[0] = chunk[1] = chunk[2] = 0
        return claim

    def claim_back(self) -> tuple[int, int, int] | None:
        while self.back >= self.front:
            chunk = self.chunks[self.back]
            self.back -= 1
            if chunk[0] or chunk[1]:
                claim = (chunk[0], chunk[1], 0)
                chunk[0] = chunk[1] = 0
                return claim
        return None

    def complete(self, swap: int, file: int) -> None:
        """A claim's page table is zapped: its swap entries are freed, its file pages unmapped.

        (Its present pages wait in the zapper's mmu_gather: :class:`Gather`.)
        """
        if file:
            self.memory.unmap_file(self.mm, file)
        if swap:
            self.memory.free_swap(self.mm, swap)
            self.settle(swap)

    def settle(self, entries: int) -> None:
        """``entries`` anon pages or swap entries of this mm are now fully freed."""
        self.unfreed -= entries
        if not self.unfreed:
            self._freed()

    def exit_done(self) -> None:
        """The exit has zapped its part; an mm with no anon or swap is 'freed' now."""
        if not self.unfreed and not self.freed:
            self._freed()

    def _freed(self) -> None:
        self.freed = True
        self.on_freed()


class SwapRelease(Protocol):
    """How zapped swap entries are released (the swap-release policy)."""

    def zap_swap(self, steps: PathSteps, plans: ZapPlans, zap: ZapWork, n: int) -> Generator[Step, None, int]:
        """Steps of zapping ``n`` swap PTEs of ``zap``; returns how many to free now with the chunk."""

    def zapped(self, zap: ZapWork) -> None:
        """A zapper finished its walk of ``zap``: hand over anything it left pending."""


class SynchronousRelease:
    """The kernel as it is: the zapper frees each entry in free_swap_and_cache_nr, nothing is left pending."""

    def zap_swap(self, steps: PathSteps, plans: ZapPlans, zap: ZapWork, n: int) -> Generator[Step, None, int]:
        yield steps.segments(plans.swap_entry, n)
        return n

    def zapped(self, zap: ZapWork) -> None:
        """Nothing was deferred."""


class Gather:
    """A zapper's mmu_gather: zapped present pages wait here until the batch is flushed and freed."""

    __slots__ = ("zap", "plans", "batch", "pending")

    def __init__(self, zap: ZapWork, plans: ZapPlans, batch: int) -> None:
        self.zap = zap
        self.plans = plans
        self.batch = batch
        self.pending = 0

    def flush(self, steps: PathSteps) -> Iterator[Step]:
        """tlb_finish_mmu / tlb_flush_mmu: free the gathered pages (outside the page-table lock)."""
        n = self.pending
        if not n:
            return
        self.pending = 0
        yield steps.segments(self.plans.present_free, n)
        yield steps.release()
        self.zap.memory.free_present(self.zap.mm, n)
        self.zap.settle(n)


def _zap_claim(steps: PathSteps, plans: ZapPlans, claim: tuple[int, int, int], zap: ZapWork, gather: Gather,
               release: SwapRelease) -> Iterator[Step]:
    """Zap one claim (a page table, under its lock), then free what it frees at once."""
    anon, swap, file = claim
    now = swap
    if anon:
        yield steps.segments(plans.present_zap, anon)
    if swap:
        now = yield from release.zap_swap(steps, plans, zap, swap)
    if file:
        yield steps.segments(plans.file_page, file)
    yield steps.release()
    zap.complete(now, file)
    gather.pending += anon
    if gather.pending >= gather.batch:
        yield from gather.flush(steps)


def exit_program(zap: ZapWork, plans: ExitPlans, compiler: StepCompiler, mmap_lock: str,
                 release: SwapRelease) -> Iterator[Step]:
    """do_exit of a process's last thread: fixed work, the mm teardown chunk by chunk, the rest.

    exit_mmap zaps under mmap_lock held for read (a reaper may zap alongside),
    then frees the page tables under it held for write, so it waits for a
    reaper still at work.
    """
    steps = PathSteps(compiler)
    gather = Gather(zap, plans.zap, plans.tlb_batch_pages)
    yield steps.segments(plans.fixed_before_mm, 1)
    yield steps.release()
    zap.mm_detached = True
    yield Lock(mmap_lock, mode="read")
    claims = 0
    while (claim := zap.claim_front()) is not None:
        yield from _zap_claim(steps, plans.zap, claim, zap, gather, release)
        claims += 1
        if claims % plans.chunks_per_table == 0:
            yield COND_RESCHED  # zap_pmd_range(): once per page table
    yield from gather.flush(steps)
    release.zapped(zap)
    yield Unlock(mmap_lock)
    zap.exit_done()
    yield Lock(mmap_lock)
    yield steps.segments(plans.fixed_after_mm, 1)
    yield steps.release()
    yield Unlock(mmap_lock)


def reap_program(zap: ZapWork, plans: ZapPlans, compiler: StepCompiler, mmap_lock: str, tlb_batch_pages: int,
                 chunks_per_table: int, release: SwapRelease) -> Iterator[Step]:
    """__oom_reap_task_mm in the reaper's own context: anon and swap PTEs from the end of the mm."""
    steps = PathSteps(compiler)
    gather = Gather(zap, plans, tlb_batch_pages)
    yield Lock(mmap_lock, mode="read")
    claims = 0
    while (claim := zap.claim_back()) is not None:
        zap.reaped[0] += claim[0]
        zap.reaped[1] += claim[1]
        yield from _zap_claim(steps, plans, claim, zap, gather, release)
        claims += 1
        if claims % chunks_per_table == 0:
            yield COND_RESCHED  # zap_pmd_range(): once per page table
    yield from gather.flush(steps)
    release.zapped(zap)
    yield Unlock(mmap_lock)

