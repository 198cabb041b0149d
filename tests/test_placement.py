"""Placement and balancing on asymmetric cores: capacity fit, misfit migration, cluster-first pulls, EAS."""

from __future__ import annotations

import random

from attrs import evolve

from actors.cpu.capacity import fits_capacity, misfit_util, periods_to_reach, util_fits_cpu
from actors.cpu.pelt import SchedAvg
from actors.cpu.scheduler import CpuGroup
from actors.cpu.topology import SchedDomain, balance_slots, build_domains
from actors.cpu.work import Compute, Sleep
from tests.conftest import Bench

MS = 1_000_000


def test_fit_leaves_a_fifth_of_the_core_spare() -> None:
    # 409 x 1280 = 523,520 < 512 x 1024 = 524,288; 410 x 1280 = 524,800 is not
    assert fits_capacity(409, 512) and not fits_capacity(410, 512)
    assert misfit_util(512) == 410 and misfit_util(1024) == 820
    assert util_fits_cpu(300, 0, 512) == 1
    assert util_fits_cpu(300, 600, 512) == -1  # the utilization fits, the clamp asks for more than the core
    assert util_fits_cpu(300, 600, 1024) == 1
    assert util_fits_cpu(450, 0, 512) == 0


def test_the_estimate_of_a_climb_is_close_to_the_signal_itself() -> None:
    n = periods_to_reach(0, 410, 512)  # 512 (1 - y**n) >= 410: n >= 32 log2(512 / 102) = 74.5
    assert n == 75
    sa = SchedAvg(0)
    assert sa.util_at(78 * MS, 512) < 410 <= sa.util_at(79 * MS, 512)  # 75 periods of 1.048576 ms
    assert periods_to_reach(500, 410, 512) == 0 and periods_to_reach(0, 512, 512) == -1


def test_a_phone_has_cluster_and_system_domains_and_a_lone_core_only_the_system_one() -> None:
    domains = build_domains([0, 0, 0, 0, 1, 1, 1, 2], 2 * MS, 16)
    assert domains[0] == [SchedDomain("MC", ((0,), (1,), (2,), (3,)), 4 * 2 * MS * 16),
                          SchedDomain("DIE", ((0, 1, 2, 3), (4, 5, 6), (7,)), 8 * 2 * MS * 16)]
    assert [sd.name for sd in domains[7]] == ["DIE"]
    assert domains[5][0].busy_interval_ns == 3 * 2 * MS * 16
    slots = balance_slots(domains, 1 * MS)
    assert len(slots) == 15
    assert (256 * MS, 1 * MS + 256 * MS * 7 // 8, 7, 0) in slots  # the prime core's DIE balance, staggered
    assert build_domains([0, 0], 2 * MS, 16)[0] == [SchedDomain("MC", ((0,), (1,)), 64 * MS)]


async def test_a_misfit_moves_to_the_idle_big_core_at_the_first_tick_after_it_stops_fitting() -> None:
    b = Bench([0.5, 1.0], slice_ns=3 * MS, tick_ns=4 * MS)
    a = b.thread("a")
    b.start(0, a, [Compute(100 * MS)])  # util 0 fits the first idle core scanned: the little one
    await b.run()
    # its utilization passes 410 (of the little core's 512) at 79 ms; the tick at 80 ms sees it misfit
    # and the idle big core takes it: 40 ms of work done at half speed, the other 60 ms at full speed
    assert b.sched.ran_on(a) == [80 * MS, 60 * MS]
    assert b.done["a"].t_ns == 140 * MS


async def test_a_misfit_waits_for_a_big_core_to_go_idle_and_its_newly_idle_balance_takes_it() -> None:
    b = Bench([0.5, 1.0], slice_ns=3 * MS, tick_ns=4 * MS)
    big, a = b.thread("big", cpus=[1]), b.thread("a")
    b.start(0, big, [Compute(100 * MS)])
    b.start(0, a, [Compute(100 * MS)])
    await b.run()
    # misfit from 80 ms, but the big core is busy until 100 ms: it takes the misfit as it goes idle,
    # after 50 ms of work done on the little core
    assert b.sched.ran_on(a) == [100 * MS, 50 * MS]
    assert b.done["a"].t_ns == 150 * MS


async def test_a_newly_idle_core_pulls_from_its_own_cluster_before_the_longer_wait_elsewhere() -> None:
    b = Bench([0.5, 0.5, 1.0], slice_ns=100 * MS)
    a, e, c, d, q = (b.thread(n) for n in "aecdq")
    b.start(0, a, [Compute(20 * MS)])  # core 0
    b.start(0, e, [Compute(2500_000)])  # core 1, ends at 5 ms
    b.start(0, c, [Compute(20 * MS)])  # core 2
    b.start(1 * MS, d, [Compute(1 * MS)])  # no idle core: the least loaded, core 2 (2048 per capacity < 4096)
    b.start(2 * MS, q, [Compute(1 * MS)])  # core 0 now ties core 2 and comes first
    await b.run()
    # core 1 goes idle at 5 ms: q (queued on core 0, its cluster, since 2 ms) before d (core 2, since 1 ms)
    assert ("q", 3 * MS) in b.delays
    assert b.sched.ran_on(q)[1] == 2 * MS
    # with its cluster's queues empty when q is done at 7 ms, core 1 takes d from the other cluster
    assert ("d", 6 * MS) in b.delays
    assert b.sched.ran_on(d) == [0, 2 * MS, 0]
    assert b.done["d"].t_ns == 9 * MS


async def _woken_after_running_on_the_big_core(group: CpuGroup) -> list[int]:
    """ns on each core of a thread that ran 40 ms on the 1.0 core, slept 1 ms and woke allowed anywhere."""
    b = Bench([0.5, 0.5, 0.75, 1.0], slice_ns=3 * MS, energy_aware=True)
    t = b.thread("t", cpus=[3], group=group)
    b.start(0, t, [Compute(40 * MS), Sleep(1 * MS), Compute(3 * MS)])
    b.at(20 * MS, lambda: b.sched.reconfigure(t, cpus=[0, 1, 2, 3]))
    await b.run()
    return b.sched.ran_on(t)


async def test_energy_aware_placement_takes_the_smallest_core_that_fits_or_the_biggest_idle_when_boosted() -> None:
    # at the wake-up (41 ms) its utilization is 564: no core is overutilized, so placement goes by fit;
    # it does not fit a little core (564 x 1280 >= 512 x 1024) and fits the 0.75 one (< 768 x 1024)
    ran = await _woken_after_running_on_the_big_core(CpuGroup(0, False))
    assert ran == [0, 0, 4 * MS, 40 * MS]  # the smallest cluster that fits: 3 ms of work at 0.75
    ran = await _woken_after_running_on_the_big_core(CpuGroup(0, True))
    assert ran == [0, 0, 4 * MS, 40 * MS]  # latency-sensitive: the smallest idle core that fits
    ran = await _woken_after_running_on_the_big_core(CpuGroup(1, True))
    assert ran == [0, 0, 0, 43 * MS]  # latency-sensitive and boosted (uclamp.min 1): the biggest idle core


async def test_while_no_core_is_overutilized_energy_aware_placement_packs_and_nobody_pulls() -> None:
    b = Bench([0.5, 1.0], slice_ns=100 * MS, energy_aware=True)
    w, t = b.thread("w"), b.thread("t")
    b.start(0, w, [Compute(20 * MS)])  # the little core (the first idle one it fits), until 40 ms
    b.start(0, t, [Compute(1 * MS), Sleep(1 * MS), Compute(1 * MS)])  # the big core, then asleep
    await b.run()
    # t wakes at 2 ms with a utilization of about 20 and the little core's about 40: both fit the little
    # core, the cheaper cluster, so t queues there behind w (run to parity) although the big core idles,
    # and no balance moves it while no core is overutilized: it runs when w is done
    assert b.sched.ran_on(t) == [2 * MS, 1 * MS]
    assert b.done["t"].t_ns == 42 * MS


async def test_each_tick_takes_its_interrupt_time_from_the_running_thread() -> None:
    b = Bench([1.0], slice_ns=3 * MS, tick_ns=4 * MS)
    b.sched.tunables = evolve(b.sched.tunables, tick_irq_min_ns=10_000, tick_irq_max_ns=10_000)
    b.sched.tick_phase_ns = 0
    b.sched.start_tick_interrupts()
    t = b.thread("t")
    b.start(1 * MS, t, [Compute(10 * MS)])
    await b.run()
    # the ticks at 4 and 8 ms each take 10 us from it (the one at 0 finds the core idle, tickless): its
    # 10 ms of work end at 11.02 ms
    assert b.done["t"].t_ns == 11 * MS + 20_000
    assert b.sched.busy_by_class() == {"other": 10 * MS, "irq": 20_000}
    assert t.run_ns == 10 * MS + 20_000  # on the CPU all along, as the kernel charges it without IRQ_TIME_ACCOUNTING


async def test_tick_interrupts_make_seeds_differ_and_the_same_seed_repeat() -> None:
    async def finish(seed: int) -> list[int]:
        b = Bench([1.0, 1.0], slice_ns=3 * MS, tick_ns=4 * MS)
        b.rt.seed = seed
        b.sched.tunables = evolve(b.sched.tunables, tick_irq_min_ns=6_000, tick_irq_max_ns=12_000)
        b.sched.rng = random.Random(seed)
        b.sched.draw_phases()
        threads = [b.thread(f"t{i}") for i in range(3)]
        for th in threads:
            b.start(0, th, [Compute(20 * MS)])
        await b.run()
        return [b.done[th.name].t_ns for th in threads]

    assert await finish(1) == await finish(1)
    assert await finish(1) != await finish(2)
