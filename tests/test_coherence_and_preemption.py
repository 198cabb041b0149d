"""Hand-computed timelines of the coherence law, the preemption models and periodic load balancing."""

from __future__ import annotations

import pytest

from actors.cpu.scheduler import NEVER, ONGOING, contenders, tick_ceil
from actors.cpu.work import COND_RESCHED, Compute, Lock, Unlock

from tests.conftest import MS, Bench


def test_contenders_count_other_cpus_that_touched_since_this_one_last_began_to() -> None:
    # CPU 0 last began to touch the lines at t=100
    since = [100, 50, 300, 600]
    # CPU 1 stopped at 80, before that; CPU 2 stopped at 450, after it; CPU 3 is still at it
    assert contenders(0, since, [150, 80, 450, ONGOING], last_cpu=3) == 2
    # nobody touched them since, but another CPU touched them last: one transfer
    assert contenders(0, since, [150, 80, 90, 95], last_cpu=3) == 1
    # this CPU touched them last and nobody since: nothing to pull
    assert contenders(0, since, [990, 80, 90, 95], last_cpu=0) == 0
    # never touched by anybody
    assert contenders(1, [NEVER] * 2, [NEVER] * 2, last_cpu=NEVER) == 0


def test_tick_ceil_rounds_up_to_the_next_tick_of_its_phase() -> None:
    assert tick_ceil(4 * MS, 4 * MS) == 4 * MS
    assert tick_ceil(4 * MS + 1, 4 * MS) == 8 * MS
    assert tick_ceil(1 * MS, 4 * MS, phase_ns=3 * MS) == 3 * MS
    assert tick_ceil(3 * MS + 1, 4 * MS, phase_ns=3 * MS) == 7 * MS
    assert tick_ceil(123, 0) == 123


async def test_a_line_touched_in_turn_by_2_3_and_4_cpus_costs_one_transfer_per_other_contender() -> None:
    # transfer 100 ns per access per CPU that touched the line since this one last did
    b = Bench([1.0] * 4, slice_ns=3 * MS)
    b.sched.add_lock("nr_swap_pages", "line", transfer_ns=100)
    touch = [Lock("nr_swap_pages", ("swap_range_free",)), Unlock("nr_swap_pages")]
    t = [b.thread(f"t{c}", cpus=[c]) for c in range(4)]
    b.start(0, t[0], touch)  # first ever touch: nothing to pull
    b.start(10, t[1], touch)  # t0 touched at 0: 1 transfer, 10..110
    b.start(200, t[2], touch)  # t0 (until 0) and t1 (until 110): 2 transfers, 200..400
    b.start(500, t[3], touch)  # 3 others: 500..800
    await b.run()
    b.start(1000, t[0], touch)  # t1, t2, t3 all touched since t0's touch at 0: 3, 1000..1300
    await b.run()
    b.start(2000, t[0], touch)  # re-touching its own line: nobody touched it since
    await b.run()
    b.start(5000, t[1], touch)  # t0 (twice), t2 and t3 touched it since t1 did at 10: 3, 5000..5300
    await b.run()
    b.start(6000, t[1], touch)  # t1 again, nobody since: nothing
    await b.run()
    b.start(7000, t[2], touch)  # t0, t1 (at 5000 and 6000: one CPU, counted once) and t3 since 200: 3
    await b.run()
    assert [th.run_ns for th in t] == [300, 400, 500, 300]
    assert b.sched.locks["nr_swap_pages"].transfers == 15
    # the transfer time is charged to the frame of the access
    assert b.sched.frame_ns[(t[3], ("swap_range_free",))] == 300


async def test_transfers_are_paid_holding_the_lock_so_holds_lengthen_with_contenders() -> None:
    # a spinlock whose lines cost 100 ns a transfer, held 1000 ns of work by each of three CPUs
    b = Bench([1.0] * 3, slice_ns=3 * MS)
    b.sched.add_lock("zs_class->lock", "spin", transfer_ns=100)
    section = [Lock("zs_class->lock"), Compute(1000), Unlock("zs_class->lock")]
    a, bb, c = (b.thread(n, cpus=[i]) for i, n in enumerate("abc"))
    b.start(0, a, section)  # first touch: holds 0..1000
    b.start(100, bb, section)  # spins 100..1000
    b.start(200, c, section)  # spins 200..(b's release)
    await b.run()
    lock = b.sched.locks["zs_class->lock"]
    # b is granted at 1000: a just released and c spins: 2 transfers, held 1000..2200
    assert b.done["b"].t_ns == 2200
    # c is granted at 2200: it never touched the lock before, so a and b both count: held 2200..3400
    assert b.done["c"].t_ns == 3400
    assert lock.held_ns == 1000 + 1200 + 1200
    assert (bb.spin_ns, c.spin_ns) == (900, 2000)
    # with two CPUs the same holds lengthen by one transfer only
    two = Bench([1.0] * 2, slice_ns=3 * MS)
    two.sched.add_lock("zs_class->lock", "spin", transfer_ns=100)
    a2, b2 = two.thread("a", cpus=[0]), two.thread("b", cpus=[1])
    two.start(0, a2, section)
    two.start(100, b2, section)
    await two.run()
    assert two.done["b"].t_ns == 2100


def kernel_and_user(b: Bench) -> tuple:
    k = b.thread("k")  # 9 ms of kernel work with a cond_resched() every 3 ms
    u = b.thread("u")
    b.start(0, k, [Compute(3 * MS), COND_RESCHED, Compute(3 * MS), COND_RESCHED, Compute(3 * MS)])
    b.start(1 * MS, u, [Compute(2 * MS, user=True)])
    return k, u


@pytest.mark.parametrize("preempt, tick, u_done", [
    ("full", 0, 5 * MS),  # no tick: 1 ms slices alternate from 1 ms (k first on the tie): u runs 2..3, 4..5
    ("full", 4 * MS, 6 * MS),  # the tick at 4 ms sees k's slice over: u runs 4..6
    ("none", 4 * MS, 8 * MS),  # the tick at 4 ms asks; k runs on to its cond_resched() at 6 ms: u runs 6..8
    ("voluntary", 4 * MS, 8 * MS),  # no sleeping lock on the way: as none
])
async def test_a_fair_slice_ends_at_a_tick_and_kernel_code_runs_on_to_cond_resched(preempt: str, tick: int,
                                                                                   u_done: int) -> None:
    b = Bench([1.0], slice_ns=1 * MS, wakeup_preemption=False, preempt=preempt, tick_ns=tick)
    kernel_and_user(b)
    await b.run()
    assert b.done["u"].t_ns == u_done
    assert b.done["k"].t_ns == 11 * MS  # 9 + 2 ms of work on one core


@pytest.mark.parametrize("preempt, user, f_done", [
    ("full", False, 2 * MS),  # SCHED_FIFO preempts kernel code at once
    ("none", False, 4 * MS),  # ... under none it waits for the cond_resched() at 3 ms
    ("none", True, 2 * MS),  # user work is preempted at once whatever the model
])
async def test_under_preempt_none_even_fifo_waits_for_cond_resched_in_kernel_code(preempt: str, user: bool,
                                                                                   f_done: int) -> None:
    b = Bench([1.0], slice_ns=1 * MS, preempt=preempt, tick_ns=4 * MS)
    k, f = b.thread("k"), b.thread("f", "fifo", prio=2)
    b.start(0, k, [Compute(3 * MS, user=user), COND_RESCHED, Compute(3 * MS, user=user)])
    b.start(1 * MS, f, [Compute(1 * MS)])
    await b.run()
    assert b.done["f"].t_ns == f_done
    assert b.done["k"].t_ns == 7 * MS


async def test_voluntary_preemption_happens_where_kernel_code_may_sleep() -> None:
    b = Bench([1.0], slice_ns=1 * MS, preempt="voluntary", tick_ns=4 * MS)
    b.sched.add_lock("cgroup_mutex", "mutex")
    k, f = b.thread("k"), b.thread("f", "fifo", prio=2)
    b.start(0, k, [Compute(3 * MS), Lock("cgroup_mutex"), Compute(1 * MS), Unlock("cgroup_mutex"),
                   Compute(2 * MS)])
    b.start(1 * MS, f, [Compute(1 * MS)])
    await b.run()
    assert b.done["f"].t_ns == 4 * MS  # at mutex_lock()'s might_sleep(), 3 ms
    b = Bench([1.0], slice_ns=1 * MS, preempt="none", tick_ns=4 * MS)
    b.sched.add_lock("cgroup_mutex", "mutex")
    k, f = b.thread("k"), b.thread("f", "fifo", prio=2)
    b.start(0, k, [Compute(3 * MS), Lock("cgroup_mutex"), Compute(1 * MS), Unlock("cgroup_mutex"),
                   Compute(2 * MS), COND_RESCHED])
    b.start(1 * MS, f, [Compute(1 * MS)])
    await b.run()
    assert b.done["f"].t_ns == 7 * MS  # none: only the program's end (or a cond_resched) lets it in


async def test_a_woken_thread_stays_on_its_busy_previous_core_until_a_busy_core_balances() -> None:
    def run(balance_ns: int) -> Bench:
        b = Bench([1.0, 1.0], slice_ns=1 * MS, balance_ns_per_cpu=balance_ns // 2)
        # four threads that last ran on core 0: the first takes it, the second the idle core 1,
        # the others queue on core 0 (select_idle_sibling finds no idle core: they stay with their cache)
        ths = [b.thread(f"v{i}", last_cpu=0) for i in range(4)]
        for th in ths:
            b.start(0, th, [Compute(40 * MS)])
        return b

    alone = run(0)
    seen: dict[str, list[int]] = {}
    alone.at(10 * MS, lambda: seen.update(alone=[len(c.queue) for c in alone.sched.cores]))
    await alone.run()
    assert seen["alone"] == [2, 0]
    assert alone.done["v1"].t_ns == 40 * MS  # alone on core 1 all along
    # balancing every 32 ms on 2 cores: core 0 at 0 ms (nothing to pull), core 1 at 16 ms pulls one
    balanced = run(32 * MS)
    balanced.at(15 * MS, lambda: seen.update(before=[len(c.queue) for c in balanced.sched.cores]))
    balanced.at(17 * MS, lambda: seen.update(after=[len(c.queue) for c in balanced.sched.cores]))
    await balanced.run()
    assert seen["before"] == [2, 0] and seen["after"] == [1, 1]
    assert balanced.done["v1"].t_ns > 40 * MS
    # both cores stay busy either way: the work ends at 4 x 40 / 2 ms
    assert max(d.t_ns for d in balanced.done.values()) == max(d.t_ns for d in alone.done.values()) == 80 * MS
