"""Reapers share a dying mm's teardown with its exit: process_mrelease, oom_reaper, kworkers."""

from __future__ import annotations

import attrs
import pytest

from actors.android.lmkd import LmkdCosts, LmkdReaper
from actors.cpu.work import Compute, Lock, Unlock
from actors.harness.storm import SimultaneousKill
from actors.kernel.kernel import CGROUP_MUTEX
from actors.kernel.oom_reaper import OomReaper
from actors.kernel.workqueue import Workqueue, WorkqueueAttrs
from actors.messages import ReapRequest
from actors.runtime.actor import Actor
from policies.kill.sigkill import SigKill
from policies.reap import REAP
from policies.swap_release.deferred import DeferredParams

from tests.conftest import COSTS, FAIR, MS, KernelWorld

NO_TRANSFERS = attrs.evolve(COSTS, cacheline_transfer_ns=0)
SIZES = {"anon": 20_000, "swap": 40_000, "file": 5_000}


class Mrelease(Actor):
    """Calls the reap program on its own thread at ``at_ns`` (what lmkd's reaper does after the kill)."""

    def __init__(self, world: KernelWorld, victim, at_ns: int) -> None:
        super().__init__("reaper")
        self.world, self.victim, self.at_ns = world, victim, at_ns
        self.thread = world.sched.spawn("reaper", self, **FAIR)
        self.done_at = None

    async def main(self) -> None:
        await self.sleep_until(self.at_ns)
        await self.world.sched.execute(self.thread, self.world.kernel.reap_program(self.victim.zap, "process_mrelease"))
        self.done_at = self.now


async def storm(reap: bool):
    w = KernelWorld(cores=2, costs=NO_TRANSFERS, kswapd=False)
    victim = w.process(7, **SIZES)
    w.rt.add(SimultaneousKill("kill", [victim], 1 * MS))
    reaper = w.rt.add(Mrelease(w, victim, 1 * MS)) if reap else None
    await w.rt.run()
    return w, victim, reaper


async def test_a_reaper_takes_part_of_the_zap_and_the_total_work_is_conserved() -> None:
    _, alone, _ = await storm(reap=False)
    w, shared, reaper = await storm(reap=True)
    zap = shared.zap
    assert 0 < zap.reaped[0] < SIZES["anon"] and 0 < zap.reaped[1] < SIZES["swap"]
    # the same chunks, split between two threads: CPU time (spinning aside) adds up exactly
    assert shared.thread.run_ns + reaper.thread.run_ns == alone.thread.run_ns
    # two CPUs zap at once: memory comes back sooner, and every page of it
    assert shared.freed_at < alone.freed_at
    assert (shared.mm.anon, shared.mm.swap, shared.mm.file, shared.mm.zpool) == (0, 0, 0, 0)
    assert w.mem.cache == SIZES["file"] and w.mem.swap_used == 0
    # exit_mmap's write lock waits for the reaper's read lock: the exit ends after the reaper
    assert shared.exited_at >= reaper.done_at
    w.mem.check_all("end")


async def test_the_exit_and_the_reaper_never_share_a_page_table_lock() -> None:
    w, _, reaper = await storm(reap=True)
    reaper_locks = {lk.name for lk in w.sched.locks.values() if lk.acquired and lk.name.endswith("/reap")}
    assert reaper_locks == {"ptl/7/reap"}  # ci->lock nests in ptl: private to the walker, left out
    assert w.sched.locks["ptl/7"].contended == 0 and w.sched.locks["ptl/7/reap"].contended == 0


def lmkd_reaper(w: KernelWorld, reap: str = "process_mrelease") -> LmkdReaper:
    costs = LmkdCosts(cycle_us=0, kill_us=0, signal_us=10, set_prio_us=100)
    w.sched.add_lock(CGROUP_MUTEX, "mutex")
    return w.rt.add(LmkdReaper("lmkd_reaper", w.kernel, thread_kw={**FAIR, "nice": -20}, costs=costs,
                               kill_method=SigKill(signal_ns=10_000), victim_cpus=[1], victim_nice=0,
                               reap=REAP.build(reap, None)))


async def test_lmkd_reaper_kills_reprioritises_and_reaps() -> None:
    w = KernelWorld(cores=2, kswapd=False)
    victim = w.process(7, **SIZES, thread_kw={**FAIR, "nice": 10, "cpus": [0]})
    reaper = lmkd_reaper(w)
    w.rt.at(1 * MS, lambda _: w.rt.post(reaper, ReapRequest(victim, None)))
    await w.rt.run()
    assert victim.killed_at == 1 * MS + 10_000  # after the reaper's pidfd_send_signal
    assert victim.thread.mask == 0b10 and victim.thread.weight == 1024
    assert reaper.reaps == 1 and reaper.esrch == 0
    assert victim.zap.reaped[1] > 0


async def test_process_mrelease_after_exit_mm_fails_with_esrch() -> None:
    w = KernelWorld(cores=2, kswapd=False)
    victim = w.process(7, **SIZES)
    w.rt.add(SimultaneousKill("kill", [victim], 0))
    reaper = lmkd_reaper(w)
    w.rt.at(2 * MS, lambda _: w.rt.post(reaper, ReapRequest(victim, None)))  # the exit passed exit_mm at 0.15 ms
    await w.rt.run()
    assert victim.zap.mm_detached and victim.exited_at > 2 * MS
    assert reaper.esrch == 1 and reaper.reaps == 0 and victim.zap.reaped == [0, 0]
    assert victim.killed_at == 0  # the reaper's second SIGKILL changed nothing


async def oom_reaper_storm(delay_ms: float, threads: int = 1, victims: int = 1):
    w = KernelWorld(cores=4, costs=NO_TRANSFERS, kswapd=False)
    procs = [w.process(7 + i, **SIZES) for i in range(victims)]
    oom = OomReaper(w.rt, "oom_reaper", w.kernel, threads=threads, delay_ns=round(delay_ms * MS), thread_kw=FAIR)
    w.rt.add(SimultaneousKill("kill", procs, 0))
    for p in procs:
        w.rt.at(0, lambda _, p=p: oom.queue(p))
    await w.rt.run()
    return w, procs, oom


async def test_oom_reaper_reaps_after_its_delay_and_memory_comes_back_sooner() -> None:
    _, (alone,), _ = await oom_reaper_storm(delay_ms=10_000)  # the exit ends first: nothing to reap
    w, (victim,), oom = await oom_reaper_storm(delay_ms=2)
    assert oom.reaped == 1 and victim.zap.reaped[1] > 0
    assert victim.freed_at - victim.killed_at < alone.freed_at - alone.killed_at
    frames = {stack[0] for (th, stack), ns in w.sched.frame_ns.items() if th is oom.threads[0]}
    assert frames == {"oom_reaper"}


async def test_oom_reaper_skips_a_victim_whose_exit_already_unmapped_everything() -> None:
    w, (victim,), oom = await oom_reaper_storm(delay_ms=10_000)
    assert oom.reaped == 0 and victim.zap.reaped == [0, 0]
    assert victim.exited_at < 10_000 * MS


async def test_a_parallel_oom_reaper_reaps_two_victims_at_once() -> None:
    _, procs, oom = await oom_reaper_storm(delay_ms=1, threads=2, victims=2)
    assert oom.reaped == 2
    assert all(p.zap.reaped[1] > 0 for p in procs)
    assert all(th.run_ns > 0 for th in oom.threads)


async def test_workqueue_runs_at_most_max_active_items_at_once_in_fifo_order() -> None:
    w = KernelWorld(cores=4)
    wq = Workqueue(w.rt, "swap_free", w.sched, max_active=2, attrs=WorkqueueAttrs.unbound([0, 1], highpri=False, nice=0))
    finished: list[tuple[int, int]] = []

    def item(k: int):
        def program():
            yield Compute(10 * MS, ("kworker",))
            finished.append((k, w.rt.now))
        return program

    w.rt.at(0, lambda _: [wq.queue_work(item(k)) for k in range(5)])
    await w.rt.run()
    assert finished == [(0, 10 * MS), (1, 10 * MS), (2, 20 * MS), (3, 20 * MS), (4, 30 * MS)]
    assert wq.completed == 5 and wq.busy == 0


async def test_kworkers_run_only_on_the_unbound_cpumask_at_the_workqueues_nice() -> None:
    """Four items at once on a workqueue whose cpumask is core 3 of 4: its four kworkers share that core
    (the last item ends at 40 ms) while the other cores stay idle; WQ_HIGHPRI workers are at nice -20."""
    w = KernelWorld(cores=4, kswapd=False)
    wq = Workqueue(w.rt, "swap_free", w.sched, max_active=4, attrs=WorkqueueAttrs.unbound([3], highpri=True, nice=0))
    done: list[int] = []

    def item():
        yield Compute(10 * MS, ("kworker",))
        done.append(w.rt.now)

    w.rt.at(0, lambda _: [wq.queue_work(item) for _ in range(4)])
    await w.rt.run()
    assert len(done) == 4 and done[-1] == 40 * MS
    assert [sum(c.busy.values()) for c in w.sched.cores] == [0, 0, 0, 40 * MS]
    assert {th.nice for th in wq.workers} == {-20} and {th.mask for th in wq.workers} == {0b1000}


def test_highpri_leaves_the_nice_to_the_kernel() -> None:
    with pytest.raises(ValueError, match="highpri"):
        DeferredParams(split_frame="zs_free", handoff_frame="h", handoff_ns=0, drop_locks=[], prefix=[],
                       batch_entries=1, max_active=1, highpri=True, nice=5)


async def test_without_process_mrelease_the_reaper_only_kills_and_reprioritises() -> None:
    w = KernelWorld(cores=2, kswapd=False)
    victim = w.process(7, **SIZES, thread_kw={**FAIR, "nice": 10, "cpus": [0]})
    reaper = lmkd_reaper(w, reap="none")
    w.rt.at(1 * MS, lambda _: w.rt.post(reaper, ReapRequest(victim, None)))
    await w.rt.run()
    assert victim.exited_at is not None and victim.zap.reaped == [0, 0]
    assert victim.thread.mask == 0b10 and reaper.reaps == 0


async def test_reap_kill_reaps_where_a_cgroup_move_before_process_mrelease_comes_too_late() -> None:
    """PROCESS_MRELEASE_REAP_KILL: the syscall holds the mm before it signals. Without it, the reaper's cgroup
    move waits 5 ms behind a migration holding cgroup_mutex while the victim passes exit_mm (0.15 ms after
    its kill), and process_mrelease then fails with ESRCH."""
    reaped = {}
    for reap in ("process_mrelease", "process_mrelease_reap_kill"):
        w = KernelWorld(cores=3, kswapd=False)
        victim = w.process(7, **SIZES, thread_kw={**FAIR, "cpus": [0]})
        reaper = lmkd_reaper(w, reap=reap)
        migrator = w.sched.spawn("migrator", None, **{**FAIR, "cpus": [2]})
        w.rt.at(0, lambda _, w=w, m=migrator: w.sched.submit(m, [Lock(CGROUP_MUTEX), Compute(5 * MS),
                                                                 Unlock(CGROUP_MUTEX)]))
        w.rt.at(1 * MS, lambda _, w=w, r=reaper, v=victim: w.rt.post(r, ReapRequest(v, None)))
        await w.rt.run()
        assert victim.killed_at == 1 * MS + 10_000  # the same signal cost, sent by the syscall or before it
        reaped[reap] = (reaper.reaps, reaper.esrch, victim.zap.reaped[1], victim.freed_at)
    assert reaped["process_mrelease"][:3] == (0, 1, 0)
    reaps, esrch, swap_pages, freed_at = reaped["process_mrelease_reap_kill"]
    assert (reaps, esrch) == (1, 0) and swap_pages > 0 and freed_at < reaped["process_mrelease"][3]
