"""Each remedy's mechanics on small hand-computed cases (docs/design.md §7)."""

from __future__ import annotations

import attrs

from actors.cpu.work import Compute, Lock, Unlock
from actors.harness.storm import SimultaneousKill
from actors.kernel.kernel import CGROUP_MUTEX
from actors.kernel.memory import MM
from actors.runtime.quantities import apportion
from policies.kill.cgroup_kill import CgroupKill, CgroupKillParams
from policies.kill.sigkill import SigKill
from policies.reap import REAP
from policies.reap.oom_reaper import OomReaperParams
from policies.swap_release import SWAP_RELEASE
from policies.swap_release.async_batch import AsyncBatchParams
from policies.swap_release.deferred import DeferredParams

from tests.conftest import COSTS, FAIR, MS, KernelWorld

NO_TRANSFERS = attrs.evolve(COSTS, cacheline_transfer_ns=0)
SIZES = {"anon": 2000, "swap": 40_000, "file": 1000}
COMMON = {"handoff_ns": 30, "max_active": 2, "highpri": False, "nice": 0}
ASYNC = AsyncBatchParams(split_frame="free_swap_and_cache_nr", handoff_frame="swap_gather_entry",
                         drop_locks=["ptl"], prefix=["process_one_work", "swap_batch_release_work"],
                         batch_entries=8192, threshold_entries=8192, sync_below="min", **COMMON)
DEFERRED = DeferredParams(split_frame="zs_free", handoff_frame="zs_free_deferred", drop_locks=["ptl", "ci->lock"],
                          prefix=["process_one_work", "zs_deferred_free_work"], batch_entries=4096, **COMMON)


def exit_world(policy: str, params=None, hog_below: str | None = None):
    w = KernelWorld(cores=2, costs=NO_TRANSFERS, kswapd=False)
    release = SWAP_RELEASE.build(policy, params)
    release.install(w.rt, w.kernel)
    w.kernel.swap_release = release
    victim = w.process(7, **SIZES)
    if hog_below is not None:  # leave free memory just under that watermark
        target = getattr(w.mem, f"wmark_{hog_below}") - 100
        w.kernel.add_mm(MM(1, "hog", 3.0, -900), anon=w.mem.free - target, file=0, swap=0)
    w.rt.add(SimultaneousKill("kill", [victim], 1 * MS))
    at_exit = {}
    victim.watch_exit(lambda p: at_exit.update(swap=p.mm.swap, swap_used=w.mem.swap_used,
                                               deferred=w.mem.zs_deferred, free=w.mem.free))
    return w, victim, release, at_exit


def kworker_ns(w: KernelWorld) -> int:
    return sum(th.run_ns for th in w.sched.threads if th.thread_class == "kworker")


async def test_async_batch_moves_release_work_to_kworkers_and_conserves_it() -> None:
    ws, sync, _, _ = exit_world("sync")
    await ws.rt.run()
    w, victim, policy, at_exit = exit_world("async_batch", ASYNC)
    await w.rt.run()
    # 84 page tables of ~476 swap entries: the first 18 are freed synchronously (17 x 476 < 8192),
    # then batches of 18 tables (>= 8192 entries) go to the kworkers: 3 full ones and a last 12 tables
    per_table = [hi - lo for lo, hi in (apportion(SIZES["swap"], 84, i) for i in range(84))]
    assert policy.deferred_entries == SIZES["swap"] - sum(per_table[:18])
    assert policy.batches == 4
    # the same work, split: the exit's part + the kworkers' part = the synchronous exit + the hand-offs
    handoff = round(policy.deferred_entries * 30)
    total = victim.thread.run_ns + kworker_ns(w)
    assert abs(total - (sync.thread.run_ns + handoff)) <= 4 * policy.batches * 8  # per-piece rounding
    assert victim.exited_at < sync.exited_at  # the exit itself is shorter
    # gathered entries stayed used swap and allocated ZRAM until the kworkers released them
    assert at_exit["swap_used"] > 0 and victim.freed_at > victim.exited_at
    assert w.mem.swap_used == 0 and victim.mm.zpool == 0 and w.mem.zs_deferred == 0
    w.mem.check_all("end")


async def test_async_batch_is_forced_synchronous_under_the_watermark() -> None:
    tight = attrs.evolve(ASYNC, sync_below="high", threshold_entries=0)
    free_run, _, unforced, _ = exit_world("async_batch", tight)
    await free_run.rt.run()
    w, victim, policy, _ = exit_world("async_batch", tight, hog_below="low")
    await w.rt.run()
    # free memory starts under low: entries are freed synchronously until the
    # exit's own freeing lifts free memory over high; exactly those are missing from the batches
    assert policy.forced_sync > 0 and unforced.forced_sync == 0
    assert policy.deferred_entries == unforced.deferred_entries - policy.forced_sync
    assert policy.seen[7] == SIZES["swap"]
    w.mem.check_all("end")


async def test_deferred_zs_free_frees_entries_at_once_and_pool_memory_at_the_drain() -> None:
    w, victim, policy, at_exit = exit_world("deferred_zs_free", DEFERRED)
    await w.rt.run()
    assert policy.deferred_entries == SIZES["swap"]
    assert at_exit["swap"] == 0  # every swap entry was freed by the exit itself
    assert policy.batches == 10  # batches of 9 tables (9 x 476 >= 4096): 9 full ones and 3 tables left
    assert kworker_ns(w) > 0
    frames = {stack[-1] for (th, stack) in w.sched.frame_ns if th.thread_class == "kworker"}
    assert {"zs_free", "obj_free"} & frames and not any(
        "zap_pte_range" in stack for (th, stack) in w.sched.frame_ns if th.thread_class == "kworker")
    assert w.mem.zs_deferred == 0 and victim.killed_at < victim.freed_at
    w.mem.check_all("end")


async def test_cgroup_kill_waits_for_cgroup_mutex_and_sigkill_does_not() -> None:
    for kill, expected in ((CgroupKill(CgroupKillParams(kill_us=150)), 5 * MS + 150_000),
                           (SigKill(signal_ns=20_000), 1 * MS + 20_000)):
        w = KernelWorld(cores=2)
        w.sched.add_lock(CGROUP_MUTEX, "mutex")
        victim = w.process(7, anon=100)
        migrator = w.sched.spawn("migrator", None, **FAIR)
        killer = w.sched.spawn("lmkd_reaper", None, **FAIR)
        w.rt.at(0, lambda _: w.sched.submit(migrator, [Lock(CGROUP_MUTEX), Compute(5 * MS), Unlock(CGROUP_MUTEX)]))
        w.rt.at(1 * MS, lambda _, k=kill: w.sched.submit(killer, k.steps(victim)))
        await w.rt.run()
        assert victim.killed_at == expected, kill
    assert w.sched.locks[CGROUP_MUTEX].contended == 0  # SigKill never touched it


async def test_oom_reaper_policy_queues_every_killed_app() -> None:
    w = KernelWorld(cores=4, costs=NO_TRANSFERS, kswapd=False)
    apps = [w.process(7 + i, **SIZES) for i in range(3)]
    reap = REAP.build("parallel_oom_reaper", OomReaperParams(delay_ms=0, nice=0, parallel_threads=3))
    reap.install(w.rt, w.kernel, apps)
    assert len(reap.reaper.threads) == 3
    w.rt.add(SimultaneousKill("kill", apps[:2], 1 * MS))
    await w.rt.run()
    assert reap.reaper.reaped == 2 and apps[2].killed_at is None
    assert all(a.zap.reaped[1] > 0 for a in apps[:2])
