"""Swappable remedy policies, one per axis of docs/design.md §7, selected by name.

Policies plug into the interfaces the model exposes (a kill method for
lmkd's threads, whether lmkd's reapers call process_mrelease, kill watchers
on processes, the kernel's swap-release hook); the model never imports a
policy.
"""

from __future__ import annotations

from typing import Literal

from actors.lmkd import KillMethod
from policies.kill import CgroupKill, CgroupKillParams, SigKill
from policies.reap import OomReaperParams, OomReaperReap, Reap
from policies.swap_release import AsyncBatch, AsyncBatchParams, DeferredParams, DeferredRelease, DeferredZsFree

KillName = Literal["sigkill", "cgroup_kill"]
ReapName = Literal["none", "process_mrelease", "oom_reaper", "parallel_oom_reaper"]
SwapReleaseName = Literal["sync", "async_batch", "deferred_zs_free"]


def kill_method(name: KillName, signal_ns: int, cgroup_kill: CgroupKillParams | None) -> KillMethod:
    if name == "cgroup_kill":
        return CgroupKill(cgroup_kill)
    return SigKill(signal_ns)


def reap_policy(name: ReapName, oom_reaper: OomReaperParams | None) -> Reap:
    if name == "oom_reaper":
        return OomReaperReap(oom_reaper, threads=1)
    if name == "parallel_oom_reaper":
        return OomReaperReap(oom_reaper, threads=oom_reaper.parallel_threads)
    return Reap(mrelease=name == "process_mrelease")


def swap_release_policy(name: SwapReleaseName, async_batch: AsyncBatchParams | None,
                        deferred_zs_free: DeferredParams | None) -> DeferredRelease | None:
    if name == "async_batch":
        return AsyncBatch(async_batch)
    if name == "deferred_zs_free":
        return DeferredZsFree(deferred_zs_free)
    return None
