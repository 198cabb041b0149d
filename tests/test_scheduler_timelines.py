"""Hand-computed timelines of the virtual CPU (docs/design.md §4)."""

from __future__ import annotations

import pytest

from actors.cpu.work import COND_RESCHED, Compute, Lock, Marker, Sleep, Unlock

from tests.conftest import MS, Bench


async def test_two_nice0_threads_on_one_core_alternate_slices_50_50() -> None:
    # EEVDF with a 1 ms slice: A runs [0,1), B [1,2), A [2,3) ... each needs 30 ms.
    b = Bench([1.0], slice_ns=1 * MS)
    a, bb = b.thread("a"), b.thread("b")
    b.start(0, a, [Compute(30 * MS)])
    b.start(0, bb, [Compute(30 * MS)])
    snap = {}
    b.at(10 * MS, lambda: snap.update(a=a.run_ns, b=bb.run_ns))
    await b.run()
    assert b.done["a"].t_ns == 59 * MS
    assert b.done["b"].t_ns == 60 * MS
    # run_ns is accounted lazily at segment boundaries; at 10 ms both have run exactly 5 ms
    b2 = Bench([1.0], slice_ns=1 * MS, end_ns=10 * MS)
    a2, c2 = b2.thread("a"), b2.thread("b")
    b2.start(0, a2, [Compute(30 * MS)])
    b2.start(0, c2, [Compute(30 * MS)])
    await b2.run()
    assert (a2.run_ns, c2.run_ns) == (5 * MS, 5 * MS)


async def test_nice0_vs_nice5_share_follows_weights_1024_335() -> None:
    b = Bench([1.0], slice_ns=1 * MS, end_ns=2000 * MS)
    a, c = b.thread("a", nice=0), b.thread("c", nice=5)
    b.start(0, a, [Compute(10_000 * MS)])
    b.start(0, c, [Compute(10_000 * MS)])
    await b.run()
    assert a.run_ns + c.run_ns == 2000 * MS
    share = a.run_ns / (a.run_ns + c.run_ns)
    assert abs(share - 1024 / (1024 + 335)) < 0.002, share


async def test_fifo_thread_preempts_fair_thread_at_once() -> None:
    b = Bench([1.0], slice_ns=3 * MS)
    f, r = b.thread("f"), b.thread("r", "fifo", prio=1)
    b.start(0, f, [Compute(10 * MS)])
    b.start(2 * MS, r, [Compute(3 * MS)])
    await b.run()
    assert b.done["r"].t_ns == 5 * MS
    assert b.done["f"].t_ns == 13 * MS
    assert ("r", 0) in b.delays
    assert f.preemptions == 1


async def test_fifo_wakeup_preempts_the_fair_thread_on_its_previous_core() -> None:
    # select_task_rq_rt(): r last ran on core 1; at 5 ms both cores run fair threads, so r preempts the one on
    # core 1 (b) and a, on core 0, is not disturbed
    b = Bench([1.0, 1.0], slice_ns=3 * MS)
    a, bb = b.thread("a", cpus=[0]), b.thread("b", cpus=[1])
    r = b.thread("r", "fifo", prio=1, last_cpu=1)
    b.start(0, a, [Compute(10 * MS)])
    b.start(0, bb, [Compute(10 * MS)])
    b.start(5 * MS, r, [Compute(1 * MS)])
    seen = []
    b.at(5 * MS + 1, lambda: seen.append(r.core.cid))
    await b.run()
    assert seen == [1]
    assert (b.done["a"].t_ns, b.done["b"].t_ns) == (10 * MS, 11 * MS)
    assert (a.preemptions, bb.preemptions) == (0, 1)


async def test_fifo_wakeup_waits_for_its_core_and_is_not_pulled_by_a_core_that_leaves_a_lone_fifo_thread() -> None:
    # preempt none: r (last on core 0) wakes at 0.2 ms while kernel work runs there until its cond_resched()
    # at 1 ms. At 0.5 ms the FIFO thread s on core 1 sleeps; core 0 is not RT-overloaded (one FIFO thread
    # queued behind a fair one), so pull_rt_task() leaves r there: it runs at 1 ms on core 0
    b = Bench([1.0, 1.0], slice_ns=3 * MS, preempt="none")
    a = b.thread("a", cpus=[0])
    s = b.thread("s", "fifo", prio=1, cpus=[1])
    r = b.thread("r", "fifo", prio=1, last_cpu=0)
    b.start(0, a, [Compute(1 * MS), COND_RESCHED, Compute(1 * MS)])
    b.start(0, s, [Compute(500_000)])
    b.start(200_000, r, [Compute(100_000)])
    await b.run()
    assert b.done["r"].t_ns == 1_100_000
    assert ("r", 800_000) in b.delays
    assert b.done["a"].t_ns == 2_100_000


async def test_higher_fifo_priority_preempts_lower_and_lower_resumes_after() -> None:
    b = Bench([1.0], slice_ns=3 * MS)
    lo, hi = b.thread("lo", "fifo", prio=10), b.thread("hi", "fifo", prio=20)
    b.start(0, lo, [Compute(4 * MS)])
    b.start(1 * MS, hi, [Compute(2 * MS)])
    await b.run()
    assert b.done["hi"].t_ns == 3 * MS
    assert b.done["lo"].t_ns == 6 * MS


async def test_spinning_waiter_burns_its_core_and_delays_a_fifo_wakeup() -> None:
    # holder on cpu0 keeps L for 5 ms; waiter on cpu1 spins 1..5 ms, then holds L 5..6 ms.
    # A FIFO thread waking on cpu1 at 2 ms cannot preempt a spinner or holder: it preempts the
    # waiter at its unlock (6 ms) and runs 6..7 ms; the waiter's program then ends at 7 ms.
    b = Bench([1.0, 1.0], slice_ns=3 * MS)
    b.sched.add_lock("L", "spin")
    h = b.thread("holder", cpus=[0])
    w = b.thread("waiter", cpus=[1])
    r = b.thread("rt", "fifo", prio=50, cpus=[1])
    b.start(0, h, [Lock("L"), Compute(5 * MS), Unlock("L")])
    b.start(1 * MS, w, [Lock("L", frame=("do_exit",)), Compute(1 * MS), Unlock("L")])
    b.start(2 * MS, r, [Compute(1 * MS)])
    await b.run()
    assert w.spin_ns == 4 * MS
    assert w.run_ns == 1 * MS
    assert b.done["rt"].t_ns == 7 * MS
    assert b.done["waiter"].t_ns == 7 * MS and w.preemptions == 1
    assert ("rt", 4 * MS) in b.delays
    assert b.sched.frame_ns[(w, ("do_exit", "queued_spin_lock_slowpath"))] == 4 * MS
    lock = b.sched.locks["L"]
    assert (lock.acquired, lock.contended, lock.wait_ns, lock.owner) == (2, 1, 4 * MS, None)


async def test_sleeping_lock_waiter_frees_its_core_and_is_woken_fifo() -> None:
    # One core, no slicing (100 ms slice, run-to-parity): H holds M across a sleep.
    # W blocks on M at 2 ms, leaving the core to X (2..5 ms). H wakes at 7, unlocks at 8,
    # handing M to W, which runs 8..9 ms. W2 queued behind W gets M at 9, runs 9..10.
    b = Bench([1.0], slice_ns=100 * MS)
    b.sched.add_lock("M", "mutex")
    h, w, x, w2 = b.thread("h"), b.thread("w"), b.thread("x"), b.thread("w2")
    b.start(0, h, [Lock("M"), Compute(2 * MS), Sleep(5 * MS), Compute(1 * MS), Unlock("M")])
    b.start(1 * MS, w, [Lock("M"), Compute(1 * MS), Unlock("M")])
    b.start(1 * MS, x, [Compute(3 * MS)])
    b.start(6 * MS, w2, [Lock("M"), Compute(1 * MS), Unlock("M")])
    await b.run()
    assert b.done["x"].t_ns == 5 * MS
    assert b.done["h"].t_ns == 8 * MS
    assert b.done["w"].t_ns == 9 * MS
    assert b.done["w2"].t_ns == 10 * MS
    assert w.spin_ns == 0 and w.sleep_ns == 6 * MS
    assert b.sched.cores[0].idle_ns == 2 * MS  # 5..7 ms: everyone asleep or blocked


async def test_core_of_capacity_half_takes_twice_as_long() -> None:
    b = Bench([0.5], slice_ns=3 * MS)
    t = b.thread("t")
    b.start(0, t, [Compute(10 * MS)])
    await b.run()
    assert b.done["t"].t_ns == 20 * MS
    assert t.run_ns == 20 * MS


async def test_cpuset_is_respected_even_when_another_core_idles() -> None:
    b = Bench([1.0, 1.0], slice_ns=1 * MS)
    a, c = b.thread("a", cpus=[1]), b.thread("c", cpus=[1])
    b.start(0, a, [Compute(5 * MS)])
    b.start(0, c, [Compute(5 * MS)])
    await b.run()
    assert max(b.done["a"].t_ns, b.done["c"].t_ns) == 10 * MS
    assert b.sched.cores[0].idle_ns == 10 * MS
    assert b.sched.cores[1].idle_ns == 0


async def test_idle_core_pulls_a_waiting_thread() -> None:
    # three nice-0 threads on two cores: the third waits on a queue until cpu0 frees at 2 ms
    b = Bench([1.0, 1.0], slice_ns=100 * MS)
    a, c, d = b.thread("a"), b.thread("c"), b.thread("d")
    b.start(0, a, [Compute(2 * MS)])
    b.start(0, c, [Compute(6 * MS)])
    b.start(0, d, [Compute(3 * MS)])
    await b.run()
    assert b.done["a"].t_ns == 2 * MS
    assert b.done["d"].t_ns == 5 * MS
    assert b.done["c"].t_ns == 6 * MS


@pytest.mark.parametrize(("run_to_parity", "ui_done_ms"), [(False, 2), (True, 4)])
async def test_wakeup_preemption_and_run_to_parity(run_to_parity: bool, ui_done_ms: int) -> None:
    # A nice -10 thread waking at 1 ms on a core busy with a nice 0 thread is the EEVDF
    # pick (placed at V with a much shorter virtual slice): without RUN_TO_PARITY it
    # preempts at once and runs 1..2 ms; with it, bg keeps its 3 ms slice and ui runs 3..4 ms.
    b = Bench([1.0], slice_ns=3 * MS, run_to_parity=run_to_parity)
    bg, ui = b.thread("bg"), b.thread("ui", nice=-10)
    b.start(0, bg, [Compute(20 * MS)])
    b.start(1 * MS, ui, [Compute(1 * MS)])
    await b.run()
    assert b.done["ui"].t_ns == ui_done_ms * MS
    assert bg.preemptions == 1  # switched out once: at the wakeup, or at its slice end


@pytest.mark.parametrize(
    ("program", "kill_ms", "done_ms", "run_ms", "sleep_ms"),
    [
        # user work is cut short at the kill
        ([Compute(10 * MS, user=True), Compute(5 * MS)], 3, 3, 3, 0),
        # kernel work runs on; the program stops at the next user step
        ([Compute(5 * MS), Marker("syscall_exit"), Compute(10 * MS, user=True)], 2, 5, 5, 0),
        # a user sleep ends at the kill
        ([Compute(1 * MS, user=True), Sleep(50 * MS, user=True), Compute(1 * MS, user=True)], 4, 4, 1, 3),
    ],
    ids=["user-compute", "kernel-compute", "user-sleep"],
)
async def test_kill(program: list, kill_ms: int, done_ms: int, run_ms: int, sleep_ms: int) -> None:
    b = Bench([1.0], slice_ns=3 * MS)
    t = b.thread("app")
    b.start(0, t, program)
    b.at(kill_ms * MS, lambda: b.sched.interrupt(t))
    await b.run()
    assert b.done["app"].t_ns == done_ms * MS and b.done["app"].interrupted
    assert (t.run_ns, t.sleep_ns) == (run_ms * MS, sleep_ms * MS)


async def test_frames_accumulate_cpu_time_per_stack() -> None:
    b = Bench([1.0], slice_ns=3 * MS)
    t = b.thread("victim")
    exit_mmap = ("do_exit", "exit_mm", "mmput", "exit_mmap")
    b.start(0, t, [Compute(2 * MS, exit_mmap + ("zap_pte_range",)), Compute(1 * MS, exit_mmap)])
    await b.run()
    assert b.sched.frame_ns[(t, exit_mmap + ("zap_pte_range",))] == 2 * MS
    assert b.sched.frame_ns[(t, exit_mmap)] == 1 * MS


async def test_lock_events_are_logged_when_the_category_is_on() -> None:
    import io
    import json

    from actors.runtime.events import EventLog
    from actors.runtime.actor import Runtime
    from actors.cpu.scheduler import CoreSpec, Scheduler, SchedTunables

    out = io.StringIO()
    rt = Runtime(seed=1, events=EventLog(out, ["lock"]))
    sched = rt.add(Scheduler("cpu", [CoreSpec(1.0)] * 2, SchedTunables(3 * MS, "none", True, True)))
    sched.add_lock("si->lock", "spin")
    a, b = sched.spawn("a", None), sched.spawn("b", None)
    rt.at(0, lambda _: sched.submit(a, [Lock("si->lock"), Compute(2 * MS), Unlock("si->lock")]))
    rt.at(MS, lambda _: sched.submit(b, [Lock("si->lock"), Unlock("si->lock")]))
    await rt.run()
    events = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [(e["t_ns"], e["event"], e["thread"]) for e in events] == [
        (MS, "lock_contended", "b"), (2 * MS, "lock_handoff", "b")]
    assert events[1]["waited_ns"] == MS


async def test_rwsem_readers_share_and_a_waiting_writer_blocks_later_readers() -> None:
    # mmap_lock-like rwsem on 4 cores: r1 and r2 read 0..4 and 1..3; w asks at 2 and waits
    # for both readers (gets it at 4, holds 2 ms); r3 asks at 3, queues behind w: 6..7.
    b = Bench([1.0] * 4, slice_ns=3 * MS)
    b.sched.add_lock("mmap_lock", "rwsem")
    r1, r2, w, r3 = b.thread("r1"), b.thread("r2"), b.thread("w"), b.thread("r3")
    read = Lock("mmap_lock", mode="read")
    b.start(0, r1, [read, Compute(4 * MS), Unlock("mmap_lock")])
    b.start(1 * MS, r2, [read, Compute(2 * MS), Unlock("mmap_lock")])
    b.start(2 * MS, w, [Lock("mmap_lock"), Compute(2 * MS), Unlock("mmap_lock")])
    b.start(3 * MS, r3, [read, Compute(1 * MS), Unlock("mmap_lock")])
    await b.run()
    assert b.done["r2"].t_ns == 3 * MS
    assert b.done["r1"].t_ns == 4 * MS
    assert b.done["w"].t_ns == 6 * MS
    assert b.done["r3"].t_ns == 7 * MS
    assert w.sleep_ns == 2 * MS and r3.sleep_ns == 3 * MS


async def test_rwlock_readers_spin_behind_a_writer_then_run_together() -> None:
    b = Bench([1.0] * 3, slice_ns=3 * MS)
    b.sched.add_lock("pool", "rwlock")
    w, r1, r2 = b.thread("w"), b.thread("r1"), b.thread("r2")
    b.start(0, w, [Lock("pool"), Compute(2 * MS), Unlock("pool")])
    b.start(1 * MS, r1, [Lock("pool", mode="read"), Compute(1 * MS), Unlock("pool")])
    b.start(1 * MS, r2, [Lock("pool", mode="read"), Compute(1 * MS), Unlock("pool")])
    await b.run()
    assert b.done["r1"].t_ns == b.done["r2"].t_ns == 3 * MS
    assert r1.spin_ns == r2.spin_ns == 1 * MS


async def test_shared_line_costs_a_transfer_per_access_only_when_it_bounces() -> None:
    # one CPU touching a line repeatedly pays nothing; a second CPU touching it pays
    # transfer_ns for each of the `count` accesses the step stands for, and so does the
    # first CPU when it comes back.
    b = Bench([1.0, 1.0], slice_ns=3 * MS)
    b.sched.add_lock("nr_swap_pages", "line", transfer_ns=100)
    a, c = b.thread("a", cpus=[0]), b.thread("c", cpus=[1])
    touch = [Lock("nr_swap_pages", ("swap_range_free",), count=10), Unlock("nr_swap_pages")]
    b.start(0, a, touch + [Compute(1000)] + touch + [Sleep(10_000)] + touch)
    b.start(5_000, c, touch)
    await b.run()
    assert c.run_ns == 1000
    assert a.run_ns == 1000 + 1000
    assert b.sched.locks["nr_swap_pages"].transfers == 20
    assert b.sched.frame_ns[(c, ("swap_range_free",))] == 1000
