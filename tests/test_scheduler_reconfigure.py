"""Hand-computed timelines of setpriority / cpuset moves (LMKD moving a victim to foreground)."""

from __future__ import annotations

from actors.cpu.work import Compute, Lock, Unlock

from tests.conftest import MS, Bench


async def test_running_thread_moved_off_its_core_continues_on_an_allowed_one() -> None:
    # A runs on core 0 (capacity 1.0) for 4 ms, then is moved to core 1 (capacity 0.5):
    # its 6 ms of work left take 12 ms there.
    b = Bench([1.0, 0.5], slice_ns=1 * MS)
    a = b.thread("a", cpus=[0])
    b.start(0, a, [Compute(10 * MS)])
    b.at(4 * MS, lambda: b.sched.reconfigure(a, cpus=[1]))
    await b.run()
    assert b.done["a"].t_ns == 16 * MS
    assert [c.busy for c in b.sched.cores] == [{"other": 4 * MS}, {"other": 12 * MS}]
    assert b.sched.ran_on(a) == [4 * MS, 12 * MS]


async def test_queued_thread_moved_to_an_idle_core_starts_at_once() -> None:
    b = Bench([1.0, 1.0], slice_ns=100 * MS)
    r, q = b.thread("r", cpus=[0]), b.thread("q", cpus=[0])
    b.start(0, r, [Compute(10 * MS)])
    b.start(0, q, [Compute(5 * MS)])
    b.at(1 * MS, lambda: b.sched.reconfigure(q, cpus=[1]))
    await b.run()
    assert b.done["q"].t_ns == 6 * MS
    assert b.done["r"].t_ns == 10 * MS


async def test_spinlock_holder_moves_at_its_next_preemption_point() -> None:
    # holding a spinlock it cannot move; it leaves core 0 when it unlocks at 5 ms
    b = Bench([1.0, 1.0], slice_ns=1 * MS)
    b.sched.add_lock("l", "spin")
    a = b.thread("a", cpus=[0])
    b.start(0, a, [Lock("l"), Compute(5 * MS), Unlock("l"), Compute(5 * MS)])
    b.at(2 * MS, lambda: b.sched.reconfigure(a, cpus=[1]))
    await b.run()
    assert b.done["a"].t_ns == 10 * MS
    assert [c.busy for c in b.sched.cores] == [{"other": 5 * MS}, {"other": 5 * MS}]


async def test_new_class_takes_the_cpu_time_from_the_change_on() -> None:
    b = Bench([1.0], slice_ns=1 * MS)
    a = b.thread("a", thread_class="app")
    b.start(0, a, [Compute(10 * MS)])
    b.at(3 * MS, lambda: b.sched.reconfigure(a, thread_class="exiting"))
    await b.run()
    assert b.sched.cores[0].busy == {"app": 3 * MS, "exiting": 7 * MS}


async def test_renicing_a_competitor_shifts_the_share_to_the_weights() -> None:
    # two nice-0 threads share a core; at 100 ms one becomes nice -20 (weight 88761 vs 1024)
    b = Bench([1.0], slice_ns=1 * MS, end_ns=1100 * MS)
    a, c = b.thread("a"), b.thread("c")
    b.start(0, a, [Compute(10_000 * MS)])
    b.start(0, c, [Compute(10_000 * MS)])
    snap = {}
    b.at(100 * MS, lambda: (snap.update(a=a.run_ns, c=c.run_ns), b.sched.reconfigure(c, nice=-20)))
    await b.run()
    assert abs(snap["a"] - snap["c"]) <= 1 * MS
    share = (c.run_ns - snap["c"]) / (1000 * MS)
    assert abs(share - 88761 / (88761 + 1024)) < 0.005, share
