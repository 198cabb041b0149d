"""Lei Liu's gather-and-batch async release (vivo, 2025).

Past ``threshold_entries`` of an mm, entries are gathered instead of freed
and released in batches of ``batch_entries`` by an unbound workqueue.
Gathered entries stay used swap, and their ZRAM memory stays allocated,
until released. While free memory is under the ``sync_below`` watermark the
zapper frees synchronously.
"""

from __future__ import annotations

from typing import Literal

from attrs import field, frozen

from actors.kernel.exit_path import ZapWork
from actors.runtime.validators import in_range
from policies.swap_release import SWAP_RELEASE
from policies.swap_release.deferred import DeferredParams, DeferredRelease, check_split


@frozen(kw_only=True)
class AsyncBatchParams(DeferredParams):
    """Also: entries per mm freed synchronously first, and the watermark below which all are."""

    threshold_entries: int = field(validator=in_range(0, 1 << 40))
    sync_below: Literal["min", "low", "high"]


@SWAP_RELEASE.register("async_batch", params=AsyncBatchParams, check=check_split)
class AsyncBatch(DeferredRelease):
    name = "async_batch"

    def __init__(self, params: AsyncBatchParams) -> None:
        super().__init__(params)
        self.threshold = params.threshold_entries
        self.sync_below = params.sync_below
        self.seen: dict[int, int] = {}
        self.forced_sync = 0

    def _defers(self, zap: ZapWork, n: int) -> bool:
        pid = zap.mm.pid
        seen = self.seen.get(pid, 0)
        self.seen[pid] = seen + n
        if seen < self.threshold:
            return False
        mem = self.kernel.memory
        wmark = {"min": mem.wmark_min, "low": mem.wmark_low, "high": mem.wmark_high}[self.sync_below]
        if mem.free < wmark:
            self.forced_sync += n
            return False
        return True

    def _handed_off(self, zap: ZapWork, n: int) -> int:
        return 0  # gathered entries stay used swap, their ZRAM memory allocated

    def _released(self, zap: ZapWork, entries: int, pool: int) -> None:
        self.kernel.memory.free_swap(zap.mm, entries)
        zap.settle(entries)
