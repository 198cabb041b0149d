"""The kernel's OOM killer: badness, selection, and an allocation that kills, waits and completes."""

from __future__ import annotations

from typing import Any, Iterator

from actors.cpu.scheduler import CoreSpec, SchedTunables
from actors.cpu.work import Sleep, Step
from actors.device import add_oom_killer, build_device
from actors.kernel.memory import MM, mb_to_pages
from actors.kernel.oom_kill import OOM_KILL_REASON, OomKill, oom_badness, pgtables_pages, select_bad_process
from actors.kernel.process import Process
from actors.runtime.actor import Runtime
from tests.conftest import COSTS, FAIR, PROFILE

MS = 1_000_000
TICK = 4 * MS
PTES = PROFILE.exit.ptes_per_table  # 512, PTRS_PER_PTE


def test_badness_is_rss_swap_and_page_tables_plus_adj_thousandths_of_ram_and_swap() -> None:
    mm = MM(1, "a", 3.0, 900)
    mm.anon, mm.file, mm.swap = 1000, 200, 5000
    assert pgtables_pages(mm, PTES) == 13  # 6200 / 512, rounded up
    assert oom_badness(mm, 900, 6_291_456, PTES) == 6213 + 900 * 6291
    assert oom_badness(mm, -900, 6_291_456, PTES) == 6213 - 900 * 6291  # negative, but still a candidate
    assert oom_badness(mm, -1000, 6_291_456, PTES) is None  # OOM_SCORE_ADJ_MIN: never


class World:
    """A 64 MB device with 16 MB of ZRAM, a 4 ms tick and the OOM killer over its processes."""

    def __init__(self) -> None:
        self.rt = Runtime(seed=1)
        tun = SchedTunables(3 * MS, "none", True, True, tick_ns=TICK)
        dev = build_device(self.rt, [CoreSpec(1.0)] * 2, tun, total_pages=mb_to_pages(64),
                           kernel_pages=mb_to_pages(8), watermark_scale_factor=10, zram_pages=mb_to_pages(16),
                           profile=PROFILE, costs=COSTS, kswapd_thread=None, scheduler_name="cpu")
        self.sched, self.mem, self.kernel = dev.scheduler, dev.memory, dev.kernel
        self.procs: list[Process] = []
        self.kills: list[tuple[str, str, int, str, int]] = []
        add_oom_killer(self.rt, self.kernel, lambda: self.procs, reaper_delay_ns=2000 * MS, reaper_nice=0,
                       on_kill=lambda v, reason, adj, via: self.kills.append((v.name, reason, adj, via,
                                                                              self.rt.now)))

    def process(self, pid: int, adj: int, anon: int = 0, swap: int = 0, **kw: Any) -> Process:
        mm = MM(pid, f"p{pid}", 4.0, adj)
        self.kernel.add_mm(mm, anon=anon, file=0, swap=swap)
        proc = self.rt.add(Process(f"p{pid}", self.kernel, mm, FAIR, **kw))
        self.procs.append(proc)
        return proc


def test_selection_takes_the_highest_badness_a_later_task_wins_a_tie_and_a_detached_mm_has_none() -> None:
    w = World()
    a, b, c = w.process(1, 900, anon=100), w.process(2, 900, anon=100), w.process(3, 800, anon=1000)
    total = w.mem.total + w.mem.swap_total
    assert select_bad_process([a, b, c], total, PTES) == OomKill(b, oom_badness(b.mm, 900, total, PTES), False)
    assert select_bad_process([c], total, PTES).victim is c
    b.kill()  # SIGKILLed by someone else: still a candidate, marked as dying
    assert select_bad_process([a, b, c], total, PTES) == OomKill(b, oom_badness(b.mm, 900, total, PTES), True)
    b.zap.mm_detached = True  # its exit passed exit_mm: nothing left to choose it by
    assert select_bad_process([a, b, c], total, PTES).victim is a
    assert select_bad_process([], total, PTES) is None


async def test_an_allocation_with_nothing_to_reclaim_kills_the_worst_waits_for_its_memory_and_completes() -> None:
    w = World()
    swap = w.mem.swap_total  # ZRAM full: reclaim can swap nothing out
    victim = w.process(1, 900, swap=swap // 2)
    spared = w.process(2, 800, swap=swap - swap // 2)
    mm = MM(10, "camera", 1.0, 0)
    w.kernel.add_mm(mm, anon=0, file=0, swap=0)
    th = w.sched.spawn("camera", None, thread_class="camera")
    # more than is free above the min watermark, less than that plus the victim's share of the pool
    want = w.mem.free - w.mem.wmark_min + 256
    assert want - (w.mem.free - w.mem.wmark_min) < victim.mm.zpool
    done: list[int] = []
    w.rt.at(1 * MS, lambda _: w.sched.submit(th, w.kernel.allocate(mm, want, "camera"),
                                             lambda r: done.append(r.t_ns)))
    w.rt.end_ns = 5000 * MS
    await w.rt.run()
    assert [k[:4] for k in w.kills] == [("p1", OOM_KILL_REASON, -999, "camera")]
    assert victim.killed_at == w.kills[0][4] and spared.killed_at is None  # one kill: the victim was pending
    assert mm.anon == want and len(done) == 1
    assert victim.freed_at is not None and victim.freed_at <= done[0]
    # the allocating thread retried once per jiffy while it waited: it is done within a jiffy of the memory
    # (and the last batch's own cost)
    assert done[0] - victim.freed_at < TICK + 1 * MS


async def test_an_allocating_task_chosen_itself_stops_allocating_and_exits() -> None:
    w = World()
    swap = w.mem.swap_total
    w.process(1, 0, swap=swap)  # the other candidate ranks far lower (adj 0)
    pages = w.mem.free  # it cannot all fit, and nothing can be reclaimed

    def activity() -> Iterator[Step]:
        yield from w.kernel.allocate(hog.mm, pages, "app")
        yield Sleep(10_000 * MS, user=True)

    hog = w.process(2, 900, activity=activity)
    w.rt.end_ns = 5000 * MS
    await w.rt.run()
    assert [k[0] for k in w.kills] == ["p2"]
    assert hog.exited_at is not None and hog.mm.anon == 0 and w.procs[0].killed_at is None
