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
from actors.profiles import DeviceCosts, ItemPath, KernelProfile, LockSpec
from actors.work import Compute, Lock, Step, Unlock

LockName = Callable[[str], str]


class PathSteps:
    """Turns (path, item count) into steps, tracking which locks are held between segments."""

    def __init__(self, locks: dict[str, LockSpec], lock_name: LockName) -> None:
        self.locks = locks
        self.lock_name = lock_name
        self.held: list[tuple[str, str]] = []

    def segments(self, path: ItemPath, cost_ns: float, n: int, prefix: tuple[str, ...]) -> Iterator[Step]:
        unit = cost_ns * path.factor
        for seg in path.segments:
            wanted = [(name, "write") for name in seg.locks] + [(name, "read") for name in seg.readers]
            while self.held and any(h not in wanted for h in self.held):
                yield Unlock(self.lock_name(self.held.pop()[0]))
            frames = prefix + tuple(seg.frames)
            for name, mode in wanted:
                if (name, mode) not in self.held:
                    spec = self.locks[name]
                    count = max(1, round(n * spec.per_item))
                    yield Lock(self.lock_name(name), frames, mode=mode, count=count)
                    self.held.append((name, mode))
            ns = round(n * unit * seg.share)
            if ns:
                yield Compute(ns, frames)

    def release(self) -> Iterator[Step]:
        while self.held:
            yield Unlock(self.lock_name(self.held.pop()[0]))


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


def exit_program(mm: MM, memory: Memory, profile: KernelProfile, costs: DeviceCosts,
                 lock_name: LockName, on_freed: Callable[[], None]) -> Iterator[Step]:
    """do_exit of a process's last thread: fixed work, the mm teardown chunk by chunk, the rest.

    Memory comes back as each chunk completes; ``on_freed`` is called when the
    last chunk has been returned (kill → memory returned).
    """
    ex = profile.exit
    prefix = tuple(ex.prefix)
    steps = PathSteps(profile.locks, lock_name)
    yield from steps.segments(ex.fixed_before_mm, costs.exit_fixed_ns, 1, ())
    yield from steps.release()
    mm.alive = False
    for anon, swap, file in zap_chunks(mm, ex.chunk_entries):
        if anon:
            yield from steps.segments(ex.present_page, costs.present_page_free_ns, anon, prefix)
        if swap:
            yield from steps.segments(ex.swap_entry, costs.swap_entry_free_ns, swap, prefix)
        if file:
            yield from steps.segments(ex.file_page, costs.file_page_unmap_ns, file, prefix)
        yield from steps.release()
        if anon:
            memory.free_present(mm, anon)
        if swap:
            memory.free_swap(mm, swap)
        if file:
            memory.unmap_file(mm, file)
    on_freed()
    yield from steps.segments(ex.fixed_after_mm, costs.exit_fixed_ns, 1, ())
    yield from steps.release()


def reclaim_program(memory: Memory, victim: MM, pages: int, profile: KernelProfile, costs: DeviceCosts,
                    lock_name: LockName, prefix: tuple[str, ...]) -> Iterator[Step]:
    """Compress up to ``pages`` anon pages of ``victim`` into ZRAM (shrink_folio_list → zram_write)."""
    steps = PathSteps(profile.locks, lock_name)
    yield from steps.segments(profile.reclaim.compress_page, costs.compress_page_ns, pages, prefix)
    yield from steps.release()
    pages = memory.reclaimable(victim, pages)  # the victim may have changed while we computed
    if pages:
        memory.compress(victim, pages)
