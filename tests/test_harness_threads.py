"""The real harness's threads as the simulated storm runs them: the sender of the SIGKILLs and the ZRAM pool
sampler (its reads, the instant it sees the memory back, its CPU)."""

from __future__ import annotations

from actors.cpu.work import Compute
from actors.harness.pool_poller import PoolPoller, pool_target
from actors.harness.storm import KillSender

from tests.conftest import MS, Bench, KernelWorld


def test_target_is_the_pool_less_the_share_of_the_watched_part() -> None:
    assert pool_target(1000, 1000, 0.9) == 100
    assert pool_target(1500, 1000, 0.9) == 600


async def test_reads_every_interval_until_the_target_and_takes_its_cpu_from_a_fair_thread() -> None:
    # one core: reads of 0.1 ms from t=0 with 0.4 ms sleeps end at 0.1, 0.6, 1.1, 1.6, 2.1 ms; the pool
    # (1000 pages, all watched) is 50 from 2 ms on, so the fifth read sees 90% back, and the poller stops.
    # The fair thread's 10 ms of work is preempted for each read: it ends at 10.5 ms.
    b = Bench([1.0], slice_ns=3 * MS)
    pool = lambda: 1000 if b.rt.now < 2 * MS else 50  # noqa: E731
    poller = b.rt.add(PoolPoller("poller", b.sched, pool, lambda: 1000, interval_ns=400_000, read_ns=100_000,
                                 returned_share=0.9,
                                 thread_kw={"policy": "fifo", "prio": 1, "thread_class": "harness"}))
    f = b.thread("f")
    b.start(0, f, [Compute(10 * MS)])
    b.at(0, poller.begin)
    await b.run()
    assert poller.returned_at == 2_100_000
    assert poller.reads == 5
    assert poller.thread.run_ns == 500_000
    assert b.done["f"].t_ns == 10_500_000


async def test_the_sender_kills_back_to_back_from_its_core_and_then_starts_what_follows() -> None:
    # two cores, each running a fair hog; the sender (last on core 0) wakes at 1 ms, preempts the hog there
    # and sends two SIGKILLs of 10 us each: at 1.01 and 1.02 ms, when on_sent() runs too
    w = KernelWorld(cores=2, kswapd=False)
    victims = [w.process(pid, anon=100) for pid in (7, 8)]
    sent = []
    sender = w.rt.add(KillSender("sender", w.sched, victims, 1 * MS, 10_000,
                                 {"policy": "fifo", "prio": 1, "thread_class": "harness", "last_cpu": 0},
                                 on_sent=lambda: sent.append((w.rt.now, sender.thread.core.cid))))
    hogs = [w.sched.spawn(f"hog{i}", None, "fair", cpus=[i]) for i in range(2)]
    w.rt.at(0, lambda _: [w.sched.submit(hog, [Compute(3 * MS)]) for hog in hogs])
    await w.rt.run()
    assert [v.killed_at for v in victims] == [1_010_000, 1_020_000]
    assert sent == [(1_020_000, 0)]
    assert sender.thread.run_ns == 20_000 and hogs[0].preemptions >= 1
    assert all(v.exited_at is not None for v in victims)
