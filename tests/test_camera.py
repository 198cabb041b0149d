"""The camera cold launch and its preview, accounted exactly on a hand-computed case."""

from __future__ import annotations

import attrs

from actors.android.camera import CameraLaunch
from actors.android.periodic import PeriodicThread
from actors.cpu.work import Compute
from actors.kernel.memory import MM
from exitstorm.lab.config import AppBandConfig, ThreadConfig
from exitstorm.lab.world import FrameStats, band_sizes, spread_adj

from tests.conftest import COSTS, FAIR, MS, Bench, KernelWorld


async def test_launch_allocates_then_the_preview_runs_and_a_fifo_hog_makes_two_frames_janky() -> None:
    # one core; allocating 1000 pages at 1 µs each takes 1..2 ms; the preview (4 ms every 10 ms)
    # starts at 2 ms: frames release at 2, 12, 22, 32, 42, 52. A FIFO thread runs 20..35 ms:
    # frame 2 (due 32) runs 35..39, 7 ms late; frame 3 (due 42) runs 39..43, 1 ms late.
    w = KernelWorld(cores=1, costs=attrs.evolve(COSTS, alloc_page_ns=1000), end_ns=60 * MS, kswapd=False)
    mm = MM(5000, "camera", 1.0)
    w.kernel.add_mm(mm, anon=0, file=0, swap=0)
    stats = FrameStats("preview", 10 * MS, 1000 * MS, lambda *a, **k: None)
    preview = w.rt.add(PeriodicThread("preview", w.sched, period_ns=10 * MS, budget_ns=4 * MS, start_ns=None,
                                      thread_kw=FAIR, on_frame=stats.on_frame))
    ready = []
    cam = w.rt.add(CameraLaunch("camera", w.kernel, mm, launch_ns=1 * MS, alloc_pages=1000, window_ns=0, steps=1,
                                threads=1, thread_kw=FAIR, preview=preview, preview_delay_ns=0,
                                on_ready=ready.append))
    hog = w.sched.spawn("hog", None, "fifo", prio=1)
    w.rt.at(20 * MS, lambda _: w.sched.submit(hog, [Compute(15 * MS)]))
    await w.rt.run()
    assert ready == [2 * MS] and cam.ready_at == 2 * MS and mm.anon == 1000
    assert cam.threads[0].run_ns == 1 * MS
    assert stats.lateness.count == 6
    assert stats.janky == 2 and stats.first_janky == 2
    assert stats.lateness.total.get_max_value() // 1000 == 7000  # 7 ms, within HDR precision
    assert preview.thread.run_ns == 6 * 4 * MS


async def test_a_launch_split_over_threads_and_steps_allocates_exactly_the_total() -> None:
    w = KernelWorld(cores=2, end_ns=100 * MS, kswapd=False)
    mm = MM(5000, "camera", 1.0)
    w.kernel.add_mm(mm, anon=0, file=0, swap=0)
    preview = w.rt.add(PeriodicThread("preview", w.sched, period_ns=10 * MS, budget_ns=1 * MS, start_ns=None,
                                      thread_kw=FAIR, on_frame=lambda *a: None))
    cam = w.rt.add(CameraLaunch("camera", w.kernel, mm, launch_ns=0, alloc_pages=10_007, window_ns=50 * MS,
                                steps=7, threads=3, thread_kw=FAIR, preview=preview, preview_delay_ns=5 * MS,
                                on_ready=lambda t: None))
    await w.rt.run()
    assert mm.anon == 10_007
    assert cam.ready_at >= 50 * MS * 6 // 7 and preview.start_ns == cam.ready_at + 5 * MS


def test_apps_are_split_over_bands_by_share_and_spread_over_each_band() -> None:
    thread = ThreadConfig(policy="fair", cpuset="background", thread_class="app")
    bands = [AppBandConfig("cached", 900, 999, 0.72, thread), AppBandConfig("service_b", 800, 800, 0.08, thread),
             AppBandConfig("previous", 700, 700, 0.04, thread), AppBandConfig("service", 500, 500, 0.16, thread)]
    assert band_sizes(25, bands) == [18, 2, 1, 4]
    assert band_sizes(100, bands) == [72, 8, 4, 16]
    assert sum(band_sizes(7, bands)) == 7
    assert spread_adj(bands[0], 4) == [999, 966, 933, 900]
    assert spread_adj(bands[0], 1) == [999] and spread_adj(bands[1], 3) == [800, 800, 800]


async def test_a_periodic_thread_runs_in_user_space_so_a_fifo_wakeup_preempts_it_at_once_under_preempt_none() -> None:
    # one core, preempt none: the frame (4 ms from 0) is user work, so the FIFO thread waking at 1 ms runs
    # 1..1.5 ms at once (no cond_resched() needed) and the frame ends at 4.5 ms
    b = Bench([1.0], slice_ns=3 * MS, preempt="none", end_ns=5 * MS)
    done = []
    preview = b.rt.add(PeriodicThread("preview", b.sched, period_ns=10 * MS, budget_ns=4 * MS, start_ns=0,
                                      thread_kw={"policy": "fair"}, on_frame=lambda k, r, d: done.append(d)))
    r = b.thread("r", "fifo", prio=1)
    b.start(1 * MS, r, [Compute(500_000)])
    await b.run()
    assert b.done["r"].t_ns == 1_500_000
    assert done == [4_500_000]
    assert preview.thread.run_ns == 4 * MS
