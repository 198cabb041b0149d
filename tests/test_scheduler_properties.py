"""Invariants of the virtual CPU over random small worlds (hypothesis)."""

from __future__ import annotations

from typing import Any

import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from actors.cpu.work import Compute, Lock, Sleep, Unlock
from benchmarks.scheduler_vs_simpy import make_workload, run_exitstorm, run_simpy
from tests.conftest import Bench

LOCKS = {"m0": "mutex", "m1": "rwsem", "s0": "spin", "s1": "rwlock", "z": "line"}
SLEEPING = ["m0", "m1"]
SPINNING = ["s0", "s1", "z"]
SHARED = {"m1", "s1", "z"}


@st.composite
def critical_section(draw: Any) -> list:
    """Locks in a global order (mutexes before spinlocks), released in reverse; never
    sleeping while a spinlock is held, as the kernel requires."""
    mutexes = draw(st.lists(st.sampled_from(SLEEPING), unique=True).map(sorted))
    spins = draw(st.lists(st.sampled_from(SPINNING), unique=True).map(sorted))
    held = mutexes + spins
    body = [Compute(draw(st.integers(0, 400_000)), ("critical",))]
    if not spins and draw(st.booleans()):
        body.append(Sleep(draw(st.integers(1, 300_000))))
    modes = [draw(st.sampled_from(["read", "write"])) if n in SHARED else "write" for n in held]
    counts = [draw(st.integers(1, 64)) for _ in held]
    acquire = [Lock(n, mode=m, count=c) for n, m, c in zip(held, modes, counts)]
    return acquire + body + [Unlock(n) for n in reversed(held)]


step_groups = st.one_of(
    st.integers(1, 2_000_000).map(lambda ns: [Compute(ns, ("work",))]),
    st.integers(1, 1_000_000).map(lambda ns: [Sleep(ns)]),
    critical_section(),
    critical_section(),
)


@st.composite
def worlds(draw: Any, capacities: Any = st.sampled_from([0.5, 1.0])) -> dict:
    ncores = draw(st.integers(1, 3))
    caps = [draw(capacities) for _ in range(ncores)]
    threads = []
    for i in range(draw(st.integers(1, 6))):
        fifo = draw(st.booleans())
        cpus = draw(st.lists(st.integers(0, ncores - 1), min_size=1, unique=True))
        program = [s for group in draw(st.lists(step_groups, min_size=1, max_size=6)) for s in group]
        threads.append({
            "name": f"t{i}",
            "policy": "fifo" if fifo else "fair",
            "prio": draw(st.integers(1, 3)) if fifo else 0,
            "nice": 0 if fifo else draw(st.sampled_from([-10, 0, 5, 19])),
            "cpus": cpus,
            "start": draw(st.integers(0, 300_000)),
            "program": program,
        })
    return {"caps": caps, "threads": threads,
            "slice": draw(st.sampled_from([100_000, 750_000, 3_000_000])),
            "parity": draw(st.booleans())}


def simulate(world: dict) -> tuple[Bench, dict]:
    b = Bench(world["caps"], slice_ns=world["slice"], run_to_parity=world["parity"])
    for name, kind in LOCKS.items():
        b.sched.add_lock(name, kind, transfer_ns=0 if kind in ("mutex", "rwsem") else 50)
    threads = {}
    for spec in world["threads"]:
        th = threads[spec["name"]] = b.thread(spec["name"], spec["policy"], prio=spec["prio"],
                                              nice=spec["nice"], cpus=spec["cpus"])
        b.start(spec["start"], th, spec["program"])
    trio.run(b.run)
    return b, threads


@settings(max_examples=150, deadline=None)
@given(worlds())
def test_every_program_completes_and_cpu_time_is_conserved(world: dict) -> None:
    b, threads = simulate(world)
    now = b.rt.now
    assert set(b.done) == set(threads)
    busy = sum(th.run_ns + th.spin_ns for th in threads.values())
    idle = sum(core.idle_ns for core in b.sched.cores)
    assert busy + idle == len(b.sched.cores) * now
    per_core = sum(sum(core.busy.values()) for core in b.sched.cores)
    assert per_core == busy
    for th in threads.values():
        assert th.run_ns + th.spin_ns + th.wait_ns + th.sleep_ns + th.idle_ns == now
        assert th.run_ns >= 0 and th.wait_ns >= 0 and th.sleep_ns >= 0
    assert sum(b.sched.frame_ns.values()) == busy
    assert b.sched.nr_active == 0


@settings(max_examples=150, deadline=None)
@given(worlds())
def test_locks_end_free_and_every_acquisition_is_accounted(world: dict) -> None:
    b, threads = simulate(world)
    for name, lock in b.sched.locks.items():
        assert lock.owner is None and not lock.waiters
        wanted = sum(1 for spec in world["threads"] for s in spec["program"]
                     if isinstance(s, Lock) and s.name == name)
        assert lock.acquired == wanted
        assert lock.contended <= lock.acquired
    for th in threads.values():
        assert not th.held and th.preempt_count == 0


@settings(max_examples=100, deadline=None)
@given(worlds(capacities=st.just(1.0)))
def test_on_full_speed_cores_cpu_time_equals_the_work_asked_for_plus_transfers(world: dict) -> None:
    b, threads = simulate(world)
    transfers = sum(lock.transfers * lock.transfer_ns for lock in b.sched.locks.values())
    asked = sum(s.ns for spec in world["threads"] for s in spec["program"] if isinstance(s, Compute))
    assert sum(th.run_ns for th in threads.values()) == asked + transfers


@settings(max_examples=40, deadline=None)
@given(worlds())
def test_same_world_same_timeline(world: dict) -> None:
    first, _ = simulate(world)
    again, _ = simulate(world)
    assert first.done == again.done and first.delays == again.delays


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 10_000), st.integers(1, 4), st.integers(2, 12))
def test_fifo_scheduling_matches_simpy_preemptive_resource(seed: int, cores: int, threads: int) -> None:
    work = make_workload(threads, 15, seed)
    done, _events, _preemptions = run_exitstorm(work, cores)
    assert done == run_simpy(work, cores)
