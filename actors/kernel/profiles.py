"""Kernel and device data the model runs on (structured from TOML by the lab).

A *kernel profile* says what the kernel does on each path: which frames an
item (a swap entry, a present page, a file page) passes through, what share
of the item's cost each frame takes, and which locks (or shared cache lines)
are held there. A *device profile* says what things cost on that hardware:
ns per item at capacity 1.0 on the reference kernel, and the latency of a
cache-line transfer between CPUs. Cost of a frame = device cost of the item
x the kernel's factor for the item x the frame's share.
"""

from __future__ import annotations

from typing import Literal

from attrs import field, frozen

from actors.cpu.scheduler import LockKind
from actors.runtime.validators import InvalidValue, in_range, non_negative, positive, refers_to, unit_share


@frozen
class LockSpec:
    """A lock on a kernel path.

    ``scope`` is ``global`` (one for the device, e.g. a zsmalloc size class
    shared by every app's objects), ``process`` (one per mm, e.g. a memcg's
    LRU lock) or ``range`` (one per mm and zapper, for locks split by address
    or swap range: the PTE lock of a page table, a swap cluster lock; the
    exit and a reaper zap opposite ends of the address space, so they never
    share one). ``per_item`` is how many kernel acquisitions one item makes
    (1/63 for a pcp batch); ``lines`` how many shared cache lines each
    acquisition pulls when another CPU touched them last.
    """

    kind: LockKind
    scope: Literal["global", "process", "range"]
    per_item: float = field(default=1.0, validator=positive)
    lines: int = field(default=0, validator=in_range(0, 64))

    def __attrs_post_init__(self) -> None:
        if self.lines and self.kind in ("mutex", "rwsem"):
            raise InvalidValue("lines", "0 for sleeping locks (transfers are modelled for spinning kinds)", self.lines)


@frozen
class Segment:
    """Part of an item's cost, spent in ``frames`` while holding ``locks`` (and ``readers`` shared)."""

    frames: list[str]
    share: float = field(validator=unit_share)
    locks: list[str] = field(factory=list, metadata=refers_to("locks of the kernel profile"))
    readers: list[str] = field(factory=list, metadata=refers_to("locks of the kernel profile"))


@frozen
class ItemPath:
    """How one item is processed: a cost factor on the device's cost and the segments it splits into."""

    factor: float = field(validator=positive)
    segments: list[Segment] = field()

    @segments.validator
    def _shares_sum_to_one(self, attribute: object, value: list[Segment]) -> None:
        if not value:  # an item that costs nothing would silently make its path cheaper
            raise InvalidValue("segments", "at least one segment", value)
        total = sum(seg.share for seg in value)
        if abs(total - 1.0) > 1e-6:
            raise InvalidValue("segments", "shares summing to 1", round(total, 6))


@frozen
class ExitProfile:
    """The exit path (docs/design.md §5): do_exit → exit_mm → … → zap_pte_range per chunk of PTEs.

    The law of contended cache lines charges a step for the contenders it sees when it begins, so a step
    must be short against how often contenders come and go: a page table per step (512) is within 1% of
    finer steps for storms under the tick alone, but overstates a storm of 2 on the VM by 5% under the
    real harness's sampler, which preempts a victim every 0.6 ms (configs/vm_storm_harness.toml: 128)."""

    #: PTEs one scheduler step of the zap stands for: the model's resolution, not the kernel's
    #: (at least 16: a finer step resolves nothing more and multiplies a run's events, 512x at 1)
    chunk_entries: int = field(validator=in_range(16, 1 << 20))
    #: PTEs per page table (PTRS_PER_PTE): zap_pmd_range() calls cond_resched() once per table
    ptes_per_table: int = field(validator=in_range(1, 1 << 20))
    #: present pages an mmu_gather collects before it is flushed (freed), and where the free path starts
    tlb_batch_pages: int = field(validator=in_range(16, 1 << 30))
    tlb_flush_frame: str
    prefix: list[str]
    swap_entry: ItemPath
    present_page: ItemPath
    file_page: ItemPath
    #: the rest of do_exit, split before / after the mm teardown (frames and shares)
    fixed_before_mm: ItemPath
    fixed_after_mm: ItemPath

    def __attrs_post_init__(self) -> None:
        if self.ptes_per_table % self.chunk_entries:
            raise InvalidValue("chunk_entries", f"a divisor of ptes_per_table ({self.ptes_per_table})",
                               self.chunk_entries)


@frozen
class ReclaimProfile:
    """Anon reclaim: compress pages into ZRAM (kswapd or direct reclaim), per batch of pages."""

    #: (at least 8: a step per page would multiply a run's reclaim events)
    batch_pages: int = field(validator=in_range(8, 1 << 20))
    prefix_kswapd: list[str]
    prefix_direct: list[str]
    compress_page: ItemPath


@frozen
class AllocProfile:
    """Anonymous allocation (a page fault or alloc_pages for a buffer): per page, take it and clear it.

    ``batch_pages`` is the unit an allocating thread takes at once (and
    checks the watermarks for).
    """

    #: (at least 8: a step per page would multiply a run's allocation events)
    batch_pages: int = field(validator=in_range(8, 1 << 20))
    prefix: list[str]
    page: ItemPath


@frozen
class ReapProfile:
    """Reaping a dying mm from another thread (mm/oom_kill.c ``__oom_reap_task_mm``).

    A reaper zaps the anon and swap PTEs with the exit path's item costs and
    locks, under its own frames: ``exit_only_frames`` are the exit walk's
    frames the reaper does not pass through (it calls unmap_page_range
    directly). How long the oom_reaper waits before reaping is the reap
    policy's (``[policies.oom_reaper] delay_ms``).
    """

    prefix_mrelease: list[str]
    prefix_oom_reaper: list[str]
    exit_only_frames: list[str]


@frozen
class KernelProfile:
    exit: ExitProfile
    reclaim: ReclaimProfile
    alloc: AllocProfile
    reap: ReapProfile
    locks: dict[str, LockSpec]


@frozen
class DeviceCosts:
    """ns per item at capacity 1.0 on the reference kernel (swap_table), per device."""

    swap_entry_free_ns: float = field(validator=non_negative)
    present_page_free_ns: float = field(validator=non_negative)
    file_page_unmap_ns: float = field(validator=non_negative)
    exit_fixed_ns: float = field(validator=non_negative)
    compress_page_ns: float = field(validator=non_negative)
    alloc_page_ns: float = field(validator=non_negative)
    cacheline_transfer_ns: float = field(validator=non_negative)


@frozen
class MemorySpec:
    total_mb: float = field(validator=positive)
    kernel_mb: float = field(validator=non_negative)
    watermark_scale_factor: int = field(validator=in_range(1, 3000))
    zram_disksize_mb: float = field(validator=non_negative)
