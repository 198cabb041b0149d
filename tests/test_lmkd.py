"""lmkd: the kill decision, victim order, kill pacing, PSI triggers."""

from __future__ import annotations

import attrs

from actors.android.lmkd import (Lmkd, LmkdCosts, LmkdProps, LmkdReaper, MemoryState, MinfreeLevel, choose_victim,
    minfree_kill_decision, psi_kill_decision)
from actors.kernel.kernel import CGROUP_MUTEX
from actors.kernel.memory import PAGES_PER_MB
from actors.kernel.psi_monitor import PsiMonitor, PsiTrigger
from actors.messages import PsiEvent
from actors.runtime.actor import Actor
from policies.kill.sigkill import SigKill
from policies.reap.process_mrelease import ProcessMrelease

from tests.conftest import COSTS, FAIR, MS, ROOT, KernelWorld

PROPS = LmkdProps(
    use_minfree_levels=False, psi_partial_stall_ms=70, psi_complete_stall_ms=700, psi_window_ms=1000,
    poll_period_short_ms=10, poll_period_long_ms=100, kill_timeout_ms=100, swap_free_low_percentage=10,
    pressure_after_kill_min_score=0, perceptible_app_adj=200, previous_app_adj=700, kill_heaviest_task=False,
    minfree_levels=[MinfreeLevel(72, 0), MinfreeLevel(90, 100), MinfreeLevel(108, 200), MinfreeLevel(126, 250),
                    MinfreeLevel(144, 900), MinfreeLevel(180, 950)],
)


def state(free: int, swap_free: int = 1000, cache: int = 0) -> MemoryState:
    return MemoryState(free=free, file_cache=cache, wmark_min=100, wmark_low=200, swap_free=swap_free,
                       swap_total=1000)


def test_the_psi_ladder() -> None:
    decide = psi_kill_decision
    assert decide(state(250), PROPS, critical=False, after_kill=False) is None
    assert decide(state(150), PROPS, critical=False, after_kill=False) == ("low_mem", 701)
    assert decide(state(150), PROPS, critical=False, after_kill=True) == ("low_mem", 701)
    assert decide(state(50), PROPS, critical=False, after_kill=True) == ("pressure_after_kill", 0)
    assert decide(state(250), PROPS, critical=True, after_kill=False) == ("not_responding", 0)
    assert decide(state(150, swap_free=99), PROPS, critical=False, after_kill=False) == ("low_swap_and_low_mem", 201)
    assert decide(state(50, swap_free=99), PROPS, critical=False, after_kill=False) == ("low_swap_and_low_mem", 0)
    assert decide(state(150, swap_free=100), PROPS, critical=False, after_kill=False) == ("low_mem", 701)


def test_minfree_levels_pick_the_lowest_level_both_free_and_cache_are_under() -> None:
    mb = PAGES_PER_MB
    levels = PROPS.minfree_levels
    assert minfree_kill_decision(state(200 * mb, cache=0), levels) is None
    assert minfree_kill_decision(state(150 * mb, cache=0), levels) == ("minfree", 950)
    assert minfree_kill_decision(state(100 * mb, cache=0), levels) == ("minfree", 200)
    assert minfree_kill_decision(state(100 * mb, cache=500 * mb), levels) is None
    assert minfree_kill_decision(state(10 * mb, cache=80 * mb), levels) == ("minfree", 100)


def test_victims_highest_adj_first_then_oldest_or_heaviest() -> None:
    w = KernelWorld()
    apps = [w.process(pid, anon=anon, adj=adj) for pid, anon, adj in
            [(10, 100, 900), (11, 300, 999), (12, 200, 999), (13, 500, 200), (14, 900, 200), (15, 50, 0)]]
    assert choose_victim(apps, 0, PROPS).pid == 11            # adj 999: the oldest in the slot
    heaviest = attrs.evolve(PROPS, kill_heaviest_task=True)
    assert choose_victim(apps, 0, heaviest).pid == 11         # ... or the heaviest (300 > 200)
    apps[1].killed_at = 0
    assert choose_victim(apps, 0, PROPS).pid == 12
    apps[2].killed_at = apps[0].killed_at = 0
    assert choose_victim(apps, 0, PROPS).pid == 14            # perceptible slot: the largest RSS
    assert choose_victim(apps, 201, PROPS) is None
    assert choose_victim(apps, -1000, PROPS).pid == 14


def paced_world(exit_fixed_ms: float, reapers: int = 0, set_prio_ms: float = 0):
    """free between min and low, no kswapd; each exit costs ``exit_fixed_ms`` of CPU."""
    w = KernelWorld(cores=4, costs=attrs.evolve(COSTS, exit_fixed_ns=round(exit_fixed_ms * MS)), end_ns=2000 * MS, kswapd=False)
    hog = w.process(1, anon=w.mem.free - (w.mem.wmark_min + w.mem.wmark_low) // 2, adj=-900)
    w.sched.add_lock(CGROUP_MUTEX, "mutex")
    cached = {**FAIR, "nice": 10, "cpus": [0]}
    apps = [hog] + [w.process(10 + i, anon=8, adj=adj, thread_kw=cached)
                    for i, adj in enumerate([900, 950, 999, 800, 200])]
    rs = [w.rt.add(LmkdReaper(f"reaper{i}", w.kernel, thread_kw={**FAIR, "nice": -20},
                              costs=LmkdCosts(0, 0, 0, set_prio_ms * 1000), kill_method=SigKill(signal_ns=0),
                              victim_cpus=[0, 1, 2, 3], victim_nice=0, reap=ProcessMrelease()))
          for i in range(reapers)]
    kills = []
    lmkd = w.rt.add(Lmkd("lmkd", w.kernel, apps, props=PROPS,
                         costs=LmkdCosts(cycle_us=1000, kill_us=500, signal_us=0, set_prio_us=0),
                         thread_kw={"policy": "fifo", "prio": 1, "thread_class": "lmkd"}, kill_method=SigKill(signal_ns=0),
                         reapers=rs,
                         on_kill=lambda v, reason, adj, via: kills.append((v.pid, reason))))
    w.rt.at(0, lambda _: w.rt.post(lmkd, PsiEvent("medium")))
    return w, apps, lmkd, kills


async def test_kills_are_paced_by_the_kill_timeout_while_victims_are_still_exiting() -> None:
    w, apps, lmkd, kills = paced_world(exit_fixed_ms=300)
    await w.rt.run()
    # cycle 1 ms + kill 0.5 ms, then the 100 ms timeout; free stays under low: only adj >= 701 go
    assert kills == [(12, "low_mem"), (11, "low_mem"), (10, "low_mem"), (13, "low_mem")]
    killed = [a.killed_at for a in apps if a.killed_at is not None]
    assert sorted(killed) == [round((1.5 + 101.5 * k) * MS) for k in range(4)]
    assert lmkd.kill_timeouts == 4 and apps[5].killed_at is None
    # the main thread's own SIGKILL leaves the victims where they were: cpu 0, nice 10
    assert all(a.thread.mask == 0b1 and a.thread.weight == 110 for a in apps[1:])


async def test_the_next_kill_follows_the_victims_death_when_it_comes_first() -> None:
    w, apps, lmkd, kills = paced_world(exit_fixed_ms=20)
    await w.rt.run()
    assert len(kills) == 4 and lmkd.kill_timeouts == 0
    by_kill = sorted((a for a in apps if a.killed_at is not None), key=lambda a: a.killed_at)
    for prev, nxt in zip(by_kill, by_kill[1:]):
        assert nxt.killed_at == prev.exited_at + round(1.5 * MS)  # one cycle and one kill later


async def test_kills_go_through_free_reapers_and_fall_back_to_the_main_thread() -> None:
    # reprioritising takes each reaper 250 ms: the third kill finds both busy
    w, apps, lmkd, kills = paced_world(exit_fixed_ms=300, reapers=2, set_prio_ms=250)
    await w.rt.run()
    assert [pid for pid, _ in kills] == [12, 11, 10, 13]
    moved = {a.pid for a in apps[1:] if a.thread.mask == 0b1111 and a.thread.weight == 1024}
    assert moved == {12, 11, 13}  # pid 10 was SIGKILLed by the main thread: not moved, not reaped
    assert sum(r.reaps + r.esrch for r in lmkd.reapers) == 3 and apps[1].zap.reaped == [0, 0]


class Inbox(Actor):
    """Records (time, trigger) of each PsiEvent it receives."""

    def __init__(self, name: str, seen: list[tuple[int, str]]) -> None:
        super().__init__(name)
        self.seen = seen

    async def main(self) -> None:
        while True:
            event: PsiEvent = await self.receive()
            self.seen.append((self.now, event.trigger))


async def test_psi_trigger_fires_when_stall_growth_reaches_the_threshold_once_per_window() -> None:
    w = KernelWorld(end_ns=2500 * MS)
    psi = w.mem.psi
    events: list[tuple[int, str]] = []
    mon = w.rt.add(PsiMonitor("psi", psi, [PsiTrigger("medium", "some", 70 * MS, 1000 * MS)],
                              w.rt.add(Inbox("lmkd", events))))
    for start, end in [(0, 80), (200, 260), (1150, 1230)]:
        w.rt.at(start * MS, lambda _: psi.enter())
        w.rt.at(end * MS, lambda _: psi.leave())
    await w.rt.run()
    # sampled every 100 ms: 80 ms of stall seen at 100 ms; at 1100 ms the window (100, 1100] holds only
    # 60 ms; at 1200 ms (200, 1200] holds 60 + 50 ms
    assert events == [(100 * MS, "medium"), (1200 * MS, "medium")]
    assert mon.fired == {"medium": 2}


def test_a_kill_decided_but_not_yet_delivered_at_the_end_is_logged_last_without_a_kill_time() -> None:
    # a cgroup.kill waiting for cgroup_mutex when the run ends: LMKD chose the victim, nobody SIGKILLed it yet
    from exitstorm.lab.config import load_experiment
    from exitstorm.runs.experiment import build_world, kill_log

    world = build_world(load_experiment(str(ROOT / "configs" / "camera_launch.toml")), None)
    late, early = world.processes[0], world.processes[1]
    world.kill_reasons[late.pid] = ("low", 0, "cgroup_kill", 5_000_000)
    world.kill_reasons[early.pid] = ("low", 0, "cgroup_kill", 7_000_000)
    early.killed_at = 8_000_000
    rows = kill_log(world)
    assert [r["victim"] for r in rows] == [early.name, late.name]
    assert rows[1]["t_kill_ms"] is None and rows[1]["t_decision_ms"] == 5.0
