"""Memory model: watermarks, conservation, exits returning memory, kswapd and direct reclaim."""

from __future__ import annotations

import tomllib

import attrs
import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from actors.cpu.scheduler import CoreSpec, SchedTunables
from actors.device import build_device
from actors.harness.storm import SimultaneousKill
from actors.kernel.memory import MM, MemoryAccountingError, mb_to_pages, watermarks
from actors.kernel.process import Process
from actors.runtime.actor import Actor, Runtime
from exitstorm.lab.config import KernelConfig
from exitstorm.schema import structure

from tests.conftest import COSTS, FAIR, PROFILE, ROOT, KernelWorld as World

def test_watermarks_follow_the_kernel_formula_for_12_gib() -> None:
    # min_free_kbytes = sqrt(12 GiB in KiB x 16) = 14189 KiB; gap = 0.1% of managed pages
    wmin, low, high = watermarks(3 * 1024 * 1024, 10)
    assert wmin == 14189 // 4 == 3547
    assert low - wmin == high - low == 3 * 1024 * 1024 * 10 // 10000 == 3145


class Allocator(Actor):
    def __init__(self, world: World, mm: MM, pages: int) -> None:
        super().__init__("allocator")
        self.world = world
        self.mm = mm
        self.pages = pages
        self.thread = world.sched.spawn("allocator", self, **FAIR)

    async def main(self) -> None:
        await self.world.sched.execute(self.thread, self.world.kernel.allocate(self.mm, self.pages, "t"))


async def test_an_exit_frees_exactly_what_the_process_held() -> None:
    w = World()
    proc = w.process(7, anon=5000, file=3000, swap=9001)
    zpool = proc.mm.zpool
    assert zpool == 3001  # ceil(9001 / 3.0)
    free0, cache0 = w.mem.free, w.mem.cache
    w.rt.add(SimultaneousKill("killer", [proc], 1000))
    await w.rt.run()
    assert proc.exited_at is not None and proc.freed_at <= proc.exited_at
    assert (proc.mm.anon, proc.mm.file, proc.mm.swap, proc.mm.zpool) == (0, 0, 0, 0)
    assert w.mem.free - free0 == 5000 + zpool
    assert w.mem.cache - cache0 == 3000
    assert w.mem.swap_used == 0
    w.mem.check_all("end")


def test_conservation_violations_are_caught_with_what_broke() -> None:
    w = World()
    mm = MM(1, "p1", 2.0)
    w.mem.add(mm, anon=10, file=0, swap=0)
    with pytest.raises(MemoryAccountingError, match="freeing 11 present pages of p1"):
        w.mem.free_present(mm, 11)


def tight_world(**kw) -> tuple[World, MM]:
    """256 MB with a 150 MB background app to reclaim from, and an empty foreground process."""
    w = World(total_mb=256, kernel_mb=16, **kw)
    w.kernel.add_mm(MM(1, "bg", 3.0), anon=mb_to_pages(150), file=0, swap=0)
    fg = MM(2, "camera", 3.0)
    w.kernel.add_mm(fg, anon=0, file=0, swap=0)
    return w, fg


async def test_kswapd_wakes_below_low_and_stops_at_high() -> None:
    w, fg = tight_world()
    target = w.mem.free - w.mem.wmark_low + 10  # ends 10 pages below low, well above min
    w.rt.add(Allocator(w, fg, target))
    await w.rt.run()
    assert w.mem.reclaimed > 0
    assert w.mem.wmark_high <= w.mem.free
    # it stopped at the first batch that crossed high: one batch of compression frees < 32 pages net
    assert w.mem.free - w.mem.wmark_high < PROFILE.reclaim.batch_pages
    assert w.mem.direct_reclaim_ns == 0 and w.mem.psi.some_ns == 0
    w.mem.check_all("end")


async def test_no_direct_reclaim_while_allocations_stay_above_min() -> None:
    w, fg = tight_world(costs=attrs.evolve(COSTS, alloc_page_ns=1000), kswapd=False)  # only the allocator reclaims
    above_min = w.mem.free - w.mem.wmark_min - 64
    a = w.rt.add(Allocator(w, fg, above_min))
    await w.rt.run()
    assert w.mem.direct_reclaim_ns == 0 and w.mem.reclaimed == 0
    assert fg.anon == above_min
    assert a.thread.run_ns == above_min * 1000  # fault + clear, 1 µs per page on one core


async def test_direct_reclaim_when_an_allocation_would_cross_min() -> None:
    w, fg = tight_world(kswapd=False)
    beyond = w.mem.free - w.mem.wmark_min + 4096
    a = w.rt.add(Allocator(w, fg, beyond))
    await w.rt.run()
    assert fg.anon == beyond
    assert w.mem.reclaimed >= 4096
    assert w.mem.free >= w.mem.wmark_min
    assert w.mem.direct_reclaim_ns > 0
    assert w.mem.psi.some_ns == w.mem.direct_reclaim_ns  # one stalled task: the allocator
    assert w.mem.psi.full_ns == w.mem.psi.some_ns        # ... and nothing else runnable
    assert w.mem.direct_reclaim_by_class == {"t": w.mem.direct_reclaim_ns}
    frames = {stack for (th, stack) in w.sched.frame_ns if th is a.thread}
    assert any(stack[:2] == ("__alloc_pages_slowpath", "__alloc_pages_direct_reclaim") for stack in frames)


KERNELS = {
    name: structure(tomllib.loads((ROOT / f"configs/kernels/{name}.toml").read_text()), KernelConfig, name).profile
    for name in ("slot_cache", "swap_table", "zsmalloc_2026")
}


@settings(max_examples=40, deadline=None)
@given(
    kernel=st.sampled_from(sorted(KERNELS)),
    cores=st.integers(1, 4),
    chunk=st.sampled_from([16, 64, 512]),
    procs=st.lists(st.tuples(st.integers(0, 3000), st.integers(0, 2000), st.integers(0, 5000),
                             st.integers(0, 2_000_000)), min_size=1, max_size=5),
)
def test_storms_return_all_memory_and_conserve_cpu_time(kernel: str, cores: int, chunk: int, procs: list) -> None:
    profile = KERNELS[kernel]
    profile = attrs.evolve(profile, exit=attrs.evolve(profile.exit, chunk_entries=chunk))
    rt = Runtime(seed=3)
    device = build_device(rt, [CoreSpec(1.0)] * cores, SchedTunables(700_000, "log", True, True),
                          total_pages=mb_to_pages(1024), kernel_pages=mb_to_pages(64), watermark_scale_factor=10,
                          zram_pages=mb_to_pages(1024), profile=profile, costs=COSTS, kswapd_thread=FAIR,
                          scheduler_name="cpu")
    sched, mem, k = device.scheduler, device.memory, device.kernel
    free0 = mem.free
    victims = []
    for i, (anon, file, swap, kill_at) in enumerate(procs):
        mm = MM(100 + i, f"v{i}", 2.5)
        k.add_mm(mm, anon=anon, file=file, swap=swap)
        proc = rt.add(Process(f"v{i}", k, mm, FAIR))
        rt.add(SimultaneousKill(f"kill{i}", [proc], kill_at))
        victims.append(proc)
    trio.run(rt.run)
    assert all(p.exited_at is not None and p.killed_at <= p.freed_at <= p.exited_at for p in victims)
    files = sum(f for _, f, _, _ in procs)
    assert mem.free == free0 - files  # anon and the ZRAM pool came back; file pages stay cached
    assert mem.cache == files and mem.swap_used == 0 and mem.zpool == 0
    busy = sum(th.run_ns + th.spin_ns for th in sched.threads)
    assert busy + sum(c.idle_ns for c in sched.cores) == cores * rt.now
    assert all(lock.owner is None and lock.readers == 0 and not lock.waiters for lock in sched.locks.values())
