"""Work programs of kernel paths built from a kernel profile: exit, reclaim.

An item path (a swap entry, a present page, a file page) is a list of
segments, each a share of the item's cost spent in some frames while holding
some locks. A *chunk* of n items becomes: for each segment, lock
transitions (keeping locks that consecutive segments share, so nesting is
the kernel's), then ``Compute(n x cost x share)``. Lock steps stand for
``n x per_item`` kernel acquisitions, which matters for cache-line transfers.
"""

from __future__ import annotations

from typing import Callable, Iterator

from actors.memory import MM, Memory
from actors.profiles import DeviceCosts, ItemPath, KernelProfile
from actors.work import Compute, Lock, Step, Unlock

Wanted = tuple[tuple[str, str], ...]


class PathPlan:
    """An item path compiled once per kernel: per segment its frames, wanted locks and share."""

    __slots__ = ("unit_ns", "segments")

    def __init__(self, path: ItemPath, cost_ns: float, prefix: tuple[str, ...]) -> None:
        self.unit_ns = cost_ns * path.factor
        self.segments: tuple[tuple[tuple[str, ...], Wanted, float], ...] = tuple(
            (prefix + tuple(seg.frames),
             tuple((name, "write") for name in seg.locks) + tuple((name, "read") for name in seg.readers),
             seg.share)
            for seg in path.segments
        )


class ExitPlans:
    """The plans of every path of a kernel profile on one device."""

    def __init__(self, profile: KernelProfile, costs: DeviceCosts) -> None:
        ex = profile.exit
        prefix = tuple(ex.prefix)
        self.chunk_entries = ex.chunk_entries
        self.fixed_before_mm = PathPlan(ex.fixed_before_mm, costs.exit_fixed_ns, ())
        self.present_page = PathPlan(ex.present_page, costs.present_page_free_ns, prefix)
        self.swap_entry = PathPlan(ex.swap_entry, costs.swap_entry_free_ns, prefix)
        self.file_page = PathPlan(ex.file_page, costs.file_page_unmap_ns, prefix)
        self.fixed_after_mm = PathPlan(ex.fixed_after_mm, costs.exit_fixed_ns, ())
        rc = profile.reclaim
        self.compress_kswapd = PathPlan(rc.compress_page, costs.compress_page_ns, tuple(rc.prefix_kswapd))
        self.compress_direct = PathPlan(rc.compress_page, costs.compress_page_ns, tuple(rc.prefix_direct))
        self.per_item = {name: spec.per_item for name, spec in profile.locks.items()}


class PathSteps:
    """Turns (plan, item count) into steps, tracking which locks are held between segments.

    ``lock_names`` maps a profile lock to the scheduler's lock (process-scope
    locks are per mm).
    """

    def __init__(self, per_item: dict[str, float], lock_names: dict[str, str]) -> None:
        self.per_item = per_item
        self.lock_names = lock_names
        self.held: list[tuple[str, str]] = []

    def segments(self, plan: PathPlan, n: int) -> Iterator[Step]:
        unit = plan.unit_ns
        held = self.held
        names = self.lock_names
        for frames, wanted, share in plan.segments:
            while held and any(h not in wanted for h in held):
                yield Unlock(names[held.pop()[0]])
            for lock in wanted:
                if lock not in held:
                    name, mode = lock
                    count = max(1, round(n * self.per_item[name]))
                    yield Lock(names[name], frames, mode=mode, count=count)
                    held.append(lock)
            ns = round(n * unit * share)
            if ns:
                yield Compute(ns, frames)

    def release(self) -> Iterator[Step]:
        while self.held:
            yield Unlock(self.lock_names[self.held.pop()[0]])


def apportion(total: int, parts: int, index: int) -> tuple[int, int]:
    """Bounds of share ``index`` of ``parts`` equal shares of ``total`` (integer, exact sum)."""
    return total * index // parts, total * (index + 1) // parts


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


def exit_program(mm: MM, memory: Memory, plans: ExitPlans, lock_names: dict[str, str],
                 on_freed: Callable[[], None]) -> Iterator[Step]:
    """do_exit of a process's last thread: fixed work, the mm teardown chunk by chunk, the rest.

    Memory comes back as each chunk completes; ``on_freed`` is called when the
    last chunk has been returned (kill → memory returned).
    """
    steps = PathSteps(plans.per_item, lock_names)
    yield from steps.segments(plans.fixed_before_mm, 1)
    yield from steps.release()
    mm.alive = False
    for anon, swap, file in zap_chunks(mm, plans.chunk_entries):
        if anon:
            yield from steps.segments(plans.present_page, anon)
        if swap:
            yield from steps.segments(plans.swap_entry, swap)
        if file:
            yield from steps.segments(plans.file_page, file)
        yield from steps.release()
        if anon:
            memory.free_present(mm, anon)
        if swap:
            memory.free_swap(mm, swap)
        if file:
            memory.unmap_file(mm, file)
    on_freed()
    yield from steps.segments(plans.fixed_after_mm, 1)
    yield from steps.release()


def reclaim_program(memory: Memory, victim: MM, pages: int, plan: PathPlan, per_item: dict[str, float],
                    lock_names: dict[str, str]) -> Iterator[Step]:
    """Compress up to ``pages`` anon pages of ``victim`` into ZRAM (shrink_folio_list → zram_write)."""
    steps = PathSteps(per_item, lock_names)
    yield from steps.segments(plan, pages)
    yield from steps.release()
    pages = memory.reclaimable(victim, pages)  # the victim may have changed while we computed
    if pages:
        memory.compress(victim, pages)
