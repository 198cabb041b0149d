"""Physical memory as page counters: free, processes, page cache, ZRAM pool, kernel.

Invariant, checked after every change (in O(1), against a running total of
what processes hold; :meth:`Memory.check_all` recounts from scratch):
``free + Σ mm(anon + file) + cache + Σ mm.zpool + zs_deferred + kernel ==
total``, and no counter is negative. ``zs_deferred`` is ZRAM pool memory of
freed swap entries whose zs_free has been deferred. Swapped-out pages are not in RAM, but their compressed
copies are: the ZRAM pool (``zpool``) lives in RAM, so freeing swap entries
gives memory back.

Memory effects happen inside work programs: a program generator changes the
counters between two steps, i.e. at the virtual instant its previous step
ended, so memory comes back chunk by chunk exactly when the CPU work that
freed it is done.
"""

from __future__ import annotations

import math
from typing import Callable, Iterator

from actors.cpu.scheduler import Scheduler
from actors.cpu.work import COND_RESCHED, Step
from actors.runtime.actor import Signal

PAGES_PER_MB = 256  # 4 KiB pages


def mb_to_pages(mb: float) -> int:
    return round(mb * PAGES_PER_MB)


def zram_pages(entries: int, ratio: float) -> int:
    """Pages of the ZRAM pool that ``entries`` swapped pages take at compression ``ratio``."""
    return math.ceil(entries / ratio)


def watermarks(managed_pages: int, watermark_scale_factor: int) -> tuple[int, int, int]:
    """mm/page_alloc.c: min from min_free_kbytes = sqrt(16 x lowmem KiB), low/high a gap above.

    gap = max(min / 4, managed x watermark_scale_factor / 10000) (one zone).
    """
    kbytes = managed_pages * 4
    min_free_kbytes = min(max(math.isqrt(kbytes * 16), 128), 262144)
    wmin = min_free_kbytes // 4
    gap = max(wmin // 4, managed_pages * watermark_scale_factor // 10000)
    return wmin, wmin + gap, wmin + 2 * gap


class MemoryAccountingError(RuntimeError):
    """A memory invariant broke: a model bug, named with what broke."""


class MM:
    """A process's memory: resident anon and file pages, swap entries, its share of the ZRAM pool.

    ``adj`` is the owner's oom_score_adj, which reclaim uses as its LRU age
    (cached apps' pages are the coldest); ``alive`` turns false at the kill.
    """

    __slots__ = ("pid", "name", "anon", "file", "swap", "zpool", "ratio", "alive", "adj")

    def __init__(self, pid: int, name: str, ratio: float, adj: int = 0) -> None:
        if ratio < 1:
            raise ValueError(f"{name}: compression ratio must be >= 1, got {ratio}")
        self.pid = pid
        self.name = name
        self.anon = 0
        self.file = 0
        self.swap = 0
        self.zpool = 0
        self.ratio = ratio
        self.alive = True
        self.adj = adj


class Psi:
    """PSI-like memory pressure: time with some / all active tasks stalled on memory.

    ``some`` accrues while at least one thread is in direct reclaim; ``full``
    while every runnable or running thread is (kernel/sched/psi.c semantics,
    without the per-CPU averaging).
    """

    def __init__(self, scheduler: Scheduler) -> None:
        self.scheduler = scheduler
        self.stalled = 0
        self.some_ns = 0
        self.full_ns = 0
        self._since = 0

    def _advance(self) -> None:
        now = self.scheduler.runtime.now
        dt = now - self._since
        self._since = now
        if self.stalled and dt:
            self.some_ns += dt
            if self.scheduler.nr_active <= self.stalled:
                self.full_ns += dt

    def enter(self) -> None:
        self._advance()
        self.stalled += 1
        if self.stalled == 1:
            self.scheduler.active_changing.connect(self._advance)

    def leave(self) -> None:
        self._advance()
        self.stalled -= 1
        if not self.stalled:
            self.scheduler.active_changing.disconnect(self._advance)

    def flush(self) -> None:
        self._advance()


class Memory:
    """The device's RAM, ZRAM pool and swap space, and the allocation slow path."""

    def __init__(self, total_pages: int, kernel_pages: int, watermark_scale_factor: int,
                 swap_pages: int, scheduler: Scheduler) -> None:
        if kernel_pages >= total_pages:
            raise ValueError("kernel memory must be smaller than total memory")
        self.total = total_pages
        self.kernel = kernel_pages
        self.free = total_pages - kernel_pages
        self.cache = 0
        self.swap_total = swap_pages
        self.swap_used = 0
        self.mms: dict[int, MM] = {}
        #: live processes by oom_score_adj, coldest (highest adj) first: reclaim's scan order
        self._by_adj: list[tuple[int, list[MM]]] = []
        #: groups before this one have no resident anon (reclaim's scan starts here; an allocation resets it)
        self._scan_from = 0
        #: Σ mm.anon + mm.file + mm.zpool, kept as the counters change
        self.held = 0
        self.zs_deferred = 0
        self.wmark_min, self.wmark_low, self.wmark_high = watermarks(total_pages - kernel_pages,
                                                                    watermark_scale_factor)
        self.psi = Psi(scheduler)
        self.scheduler = scheduler
        #: emitted when an allocation leaves free memory under the low watermark (wakeup_kswapd())
        self.low = Signal("memory.low")
        self.min_free = self.free
        #: direct-reclaim time by the stalled thread's class, and a signal per stall (class, ns)
        self.direct_reclaim_by_class: dict[str, int] = {}
        self.reclaim_stalled = Signal("memory.reclaim_stalled")
        self.reclaimed = 0

    # -- invariant -------------------------------------------------------------
    def check(self, mm: MM, what: str, n: int = 0) -> None:
        """After ``what`` (a format of ``n`` and ``mm.name``) changed ``mm``: counters >= 0, pages add up."""
        if (mm.anon < 0 or mm.file < 0 or mm.swap < 0 or mm.zpool < 0 or self.free < 0 or self.swap_used < 0
                or self.zs_deferred < 0
                or self.free + self.held + self.cache + self.zs_deferred + self.kernel != self.total):
            self._broken(what.format(n=n, mm=mm.name), self.held)

    def check_all(self, where: str) -> None:
        """The invariant recounted over every process (the running total must agree)."""
        held = sum(mm.anon + mm.file + mm.zpool for mm in self.mms.values())
        counters = [self.free, self.cache, self.swap_used, self.zs_deferred] + [
            v for mm in self.mms.values() for v in (mm.anon, mm.file, mm.swap, mm.zpool)]
        if (min(counters) < 0 or held != self.held
                or self.free + held + self.cache + self.zs_deferred + self.kernel != self.total):
            self._broken(where, held)

    def _broken(self, where: str, held: int) -> None:
        raise MemoryAccountingError(
            f"memory conservation broken after {where}: free {self.free} + processes {held} + "
            f"cache {self.cache} + deferred zs_free {self.zs_deferred} + kernel {self.kernel} != total {self.total} "
            f"(or a counter < 0)")

    def _took(self) -> None:
        if self.free < self.min_free:
            self.min_free = self.free
        if self.free < self.wmark_low and self.low.subscribers:
            self.low.emit()

    @property
    def direct_reclaim_ns(self) -> int:
        """Time threads spent in direct reclaim, all classes."""
        return sum(self.direct_reclaim_by_class.values())

    @property
    def zpool(self) -> int:
        """Pages of the ZRAM pool: processes' compressed data and deferred frees."""
        return sum(mm.zpool for mm in self.mms.values()) + self.zs_deferred

    # -- set-up -----------------------------------------------------------------
    def add(self, mm: MM, anon: int, file: int, swap: int) -> None:
        """A process that already holds memory at the start (its swapped part compressed)."""
        zpool = zram_pages(swap, mm.ratio)
        need = anon + file + zpool
        if need > self.free:
            raise ValueError(f"{mm.name} needs {need / PAGES_PER_MB:.0f} MB of RAM, only "
                             f"{self.free / PAGES_PER_MB:.0f} MB are left of {self.total / PAGES_PER_MB:.0f} MB")
        if self.swap_used + swap > self.swap_total:
            raise ValueError(f"{mm.name}: ZRAM swap exhausted ({self.swap_total / PAGES_PER_MB:.0f} MB "
                             f"disksize, {self.swap_used / PAGES_PER_MB:.0f} MB used)")
        self.mms[mm.pid] = mm
        for adj, group in self._by_adj:
            if adj == mm.adj:
                group.append(mm)
                break
        else:
            self._by_adj.append((mm.adj, [mm]))
            self._by_adj.sort(key=lambda entry: -entry[0])
        self._scan_from = 0
        mm.anon, mm.file, mm.swap, mm.zpool = anon, file, swap, zpool
        self.free -= need
        self.held += need
        self.swap_used += swap
        self.check(mm, "adding {mm}")
        self._took()

    # -- effects of work ---------------------------------------------------------
    def free_present(self, mm: MM, n: int) -> None:
        mm.anon -= n
        self.free += n
        self.held -= n
        self.check(mm, "freeing {n} present pages of {mm}", n)

    def free_swap(self, mm: MM, n: int, defer_pool: bool = False) -> int:
        """Free ``n`` swap entries; their compressed share of the pool comes back to free.

        With ``defer_pool`` (zs_free deferred) the pool pages stay allocated
        until :meth:`release_deferred`. Returns the pool pages concerned.
        """
        back = mm.zpool if n == mm.swap else mm.zpool * n // mm.swap
        mm.swap -= n
        mm.zpool -= back
        self.swap_used -= n
        self.held -= back
        if defer_pool:
            self.zs_deferred += back
        else:
            self.free += back
        self.check(mm, "freeing {n} swap entries of {mm}", n)
        return back

    def release_deferred(self, pages: int, mm: MM) -> None:
        """Deferred zs_free ran: ``pages`` of the ZRAM pool (entries of ``mm``) come back."""
        self.zs_deferred -= pages
        self.free += pages
        self.check(mm, "releasing {n} deferred pool pages of {mm}", pages)

    def unmap_file(self, mm: MM, n: int) -> None:
        """Unmapped file pages stay in the page cache."""
        mm.file -= n
        self.cache += n
        self.held -= n
        self.check(mm, "unmapping {n} file pages of {mm}", n)

    def compress(self, mm: MM, n: int) -> None:
        """Swap out ``n`` anon pages of ``mm`` into ZRAM."""
        before = zram_pages(mm.swap, mm.ratio)
        mm.anon -= n
        mm.swap += n
        grown = zram_pages(mm.swap, mm.ratio) - before
        mm.zpool += grown
        self.swap_used += n
        self.free += n - grown
        self.held -= n - grown
        self.reclaimed += n
        self.check(mm, "compressing {n} pages of {mm}", n)

    def allocate(self, mm: MM, n: int) -> None:
        mm.anon += n
        self._scan_from = 0
        self.free -= n
        self.held += n
        self.check(mm, "allocating {n} pages to {mm}", n)
        self._took()

    def swap_out(self, victim: MM, pages: int) -> None:
        """Reclaim compressed up to ``pages`` of ``victim``: those it still can swap out now (the victim
        may have been killed, or reclaimed by another thread, meanwhile)."""
        pages = self.reclaimable(victim, pages)
        if pages:
            self.compress(victim, pages)

    def reclaimable(self, victim: MM, pages: int) -> int:
        """How many of ``pages`` anon pages of live ``victim`` can go to ZRAM now (resident, swap room)."""
        if not victim.alive:
            return 0
        return min(pages, victim.anon, self.swap_total - self.swap_used)

    def reclaim_victim(self, exclude: MM | None = None) -> MM | None:
        """The coldest live process with resident anon, swap space permitting.

        Coldest = highest oom_score_adj, then most resident anon, then lowest pid.
        """
        if self.swap_used >= self.swap_total:
            return None
        groups = self._by_adj
        for i in range(self._scan_from, len(groups)):
            best = None
            top = 0
            empty = True
            for mm in groups[i][1]:
                anon = mm.anon
                if anon:
                    empty = False
                    if anon >= top and mm is not exclude and (anon > top or mm.pid < best.pid):
                        best, top = mm, anon
            if best is not None:
                return best
            if empty and i == self._scan_from:
                self._scan_from += 1  # nothing resident left here until an allocation
        return None

    def kill(self, mm: MM) -> None:
        """``mm``'s owner was SIGKILLed: it leaves reclaim's scan for good."""
        mm.alive = False
        for _adj, group in self._by_adj:
            if mm in group:
                group.remove(mm)


def allocation(memory: Memory, mm: MM, pages: int, batch: int, reclaim_batch: int,
               reclaim: Callable[[int, MM], tuple[Step, ...]], charge: Callable[[int], tuple[Step, ...]], who: str,
               out_of_memory: Callable[[MM], Iterator[Step]] | None = None) -> Iterator[Step | tuple[Step, ...]]:
    """Work steps of allocating ``pages`` to ``mm`` in batches (page fault / alloc_pages).

    Each batch costs the steps ``charge(n)`` in the allocating thread. Below
    the min watermark the thread first does direct reclaim in its own
    context, stalled on memory (PSI) while it does, ``reclaim_batch`` pages at
    a time (SWAP_CLUSTER_MAX; ``reclaim(k, victim)`` are the steps of one);
    ``who`` is its thread class for the direct-reclaim accounting. With
    nothing to reclaim, ``out_of_memory(mm)`` (the OOM killer) gives the steps
    of its path, and the allocation tries again; a thread whose own mm has been
    killed meanwhile stops allocating (its fault fails and it exits).
    """
    left = pages
    while left:
        n = min(batch, left)
        while memory.free - n < memory.wmark_min:
            if not mm.alive:
                return
            victim = memory.reclaim_victim(exclude=mm)
            if victim is None:
                if out_of_memory is None:
                    raise MemoryAccountingError(f"out of memory allocating {n} pages for {mm.name}: nothing to "
                                                "reclaim and no OOM killer")
                yield from out_of_memory(mm)
                continue
            k = memory.reclaimable(victim, reclaim_batch)
            memory.psi.enter()
            started = memory.scheduler.runtime.now
            yield reclaim(k, victim)
            memory.swap_out(victim, k)
            yield COND_RESCHED  # shrink_folio_list() between folios
            stall = memory.scheduler.runtime.now - started
            memory.direct_reclaim_by_class[who] = memory.direct_reclaim_by_class.get(who, 0) + stall
            memory.psi.leave()
            if memory.reclaim_stalled.subscribers:
                memory.reclaim_stalled.emit(who, stall)
        memory.allocate(mm, n)
        yield charge(n)
        yield COND_RESCHED  # a fault returns to user (a buffer allocation reschedules between chunks)
        left -= n
