"""Wenchao Hao's deferred zs_free (2026 RFC).

zs_free is deferred to a list an unbound workqueue drains: the swap entry is
freed at once, its compressed memory only when the drain runs.
"""

from __future__ import annotations

from actors.kernel.exit_path import ZapWork
from policies.swap_release import SWAP_RELEASE
from policies.swap_release.deferred import DeferredParams, DeferredRelease, check_split


@SWAP_RELEASE.register("deferred_zs_free", params=DeferredParams, check=check_split)
class DeferredZsFree(DeferredRelease):
    name = "deferred_zs_free"

    def _defers(self, zap: ZapWork, n: int) -> bool:
        return True

    def _handed_off(self, zap: ZapWork, n: int) -> int:
        return self.kernel.memory.free_swap(zap.mm, n, defer_pool=True)

    def _released(self, zap: ZapWork, entries: int, pool: int) -> None:
        self.kernel.memory.release_deferred(pool, zap.mm)
        zap.settle(entries)
