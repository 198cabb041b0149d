"""The invariants every run checks: each one catches its own breakage, and random worlds keep them all."""

from __future__ import annotations

import json
import pickle
import tempfile
from pathlib import Path

import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from actors.checks import invariants
from actors.checks.invariants import InvariantViolation
from actors.cpu.work import Compute, Lock, Unlock
from actors.harness.storm import SimultaneousKill
from exitstorm.lab.config import load_experiment
from exitstorm.runs.experiment import build_world, run_experiment
from exitstorm.runs.sweep import parse_grid, sweep
from tests.conftest import MS, ROOT, KernelWorld, dir_bytes

CAMERA = str(ROOT / "configs" / "camera_launch.toml")


async def _storm(end_ms: int = 400) -> KernelWorld:
    """Three processes killed together at 1 ms and a pair of threads contending on a spinlock."""
    w = KernelWorld(end_ns=end_ms * MS)
    procs = [w.process(10 + i, anon=2000, swap=6000) for i in range(3)]
    w.rt.add(SimultaneousKill("storm", procs, 1 * MS))
    w.sched.add_lock("test_lock", "spin")
    for i in range(2):
        th = w.sched.spawn(f"locker{i}", None, "fair", thread_class="t")
        w.rt.at(0, lambda _, th=th: w.sched.submit(th, [Compute(3 * MS), Lock("test_lock"), Compute(2 * MS),
                                                        Unlock("test_lock")]))
    await w.rt.run()
    w.procs = procs
    return w


def _check(w: KernelWorld) -> None:
    invariants.check_all(w.sched, w.mem, w.procs, w.rt.now)


async def test_a_storm_keeps_every_invariant() -> None:
    w = await _storm()
    _check(w)
    assert all(p.exited_at is not None for p in w.procs)


@pytest.mark.parametrize(("tamper", "invariant", "actor"), [
    (lambda w: setattr(w.sched.threads[0], "run_ns", w.sched.threads[0].run_ns + 1), "CPU-time conservation",
     "kswapd0"),
    (lambda w: setattr(w.sched.cores[1], "idle_ns", w.sched.cores[1].idle_ns - 5), "CPU-time conservation", "cpu1"),
    (lambda w: setattr(w.sched.threads[1], "wait_ns", -1), "CPU-time conservation", "p10"),
    (lambda w: setattr(w.sched.locks["test_lock"], "owner", w.sched.threads[2]), "lock safety", "p11"),
    (lambda w: w.sched.locks["test_lock"].waiters.append((w.sched.threads[3], True, None)), "lock safety", "p12"),
    (lambda w: setattr(w.sched.locks["test_lock"], "contended", -1), "no negative counter", "test_lock"),
    (lambda w: setattr(w.procs[2], "exited_at", None), "killed process accounted for", "p12"),
    (lambda w: setattr(w.mem, "free", w.mem.free + 1), "memory conservation", "memory"),
])
async def test_each_invariant_names_itself_the_actor_and_the_time(tamper, invariant: str, actor: str) -> None:
    w = await _storm()
    tamper(w)
    with pytest.raises(InvariantViolation) as caught:
        _check(w)
    err = caught.value
    assert (err.invariant, err.actor, err.t_ns) == (invariant, actor, 400 * MS)
    assert f"invariant '{invariant}' broken by {actor} at t=400000000 ns (400.000000 ms)" in str(err)
    again = pickle.loads(pickle.dumps(err))
    assert str(again) == str(err)


async def test_a_process_killed_at_the_last_instant_counts_as_exiting() -> None:
    w = KernelWorld(end_ns=50 * MS)
    proc = w.process(10, anon=100, swap=100)
    w.rt.add(SimultaneousKill("storm", [proc], 50 * MS))
    await w.rt.run()
    w.procs = [proc]
    assert proc.killed_at == 50 * MS and proc.exited_at is None
    _check(w)


def test_a_violation_fails_the_run_with_status_1_and_one_line(tmp_path: Path, monkeypatch, capsys) -> None:
    from exitstorm import cli

    def broken(sched, memory, processes, now):
        raise InvariantViolation("lock safety", "lmkd", now, "made up for the test")

    monkeypatch.setattr(invariants, "check_all", broken)
    out = tmp_path / "r"
    code = cli.main(["run", str(ROOT / "configs" / "cpu_contention.toml"), "--out", str(out),
                     "--set", "scenario.duration_s=0.05"])
    assert code == 1 and not out.exists()
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "invariant 'lock safety' broken by lmkd" in err


worlds = st.fixed_dictionaries({
    "apps.count": st.integers(3, 8),
    "apps.swapped_mb": st.sampled_from(["{min = 20, max = 60}", "{min = 60, max = 200}"]),
    "kernel": st.sampled_from(['"slot_cache"', '"swap_table"', '"zsmalloc_2026"']),
    "policies.kill": st.sampled_from(['"sigkill"', '"cgroup_kill"']),
    "policies.reap": st.sampled_from(['"none"', '"process_mrelease"', '"oom_reaper"', '"parallel_oom_reaper"']),
    "policies.swap_release": st.sampled_from(['"sync"', '"async_batch"', '"deferred_zs_free"']),
    "camera.alloc_mb": st.integers(300, 1500),
    "scenario.seed": st.integers(0, 10_000),
})


@settings(max_examples=15, deadline=None)
@given(worlds)
def test_random_worlds_keep_every_invariant_and_policies_free_each_page_once(choices: dict[str, object]) -> None:
    sets = [f"{k}={v}" for k, v in choices.items()] + ["scenario.duration_s=1.5"]
    world = build_world(load_experiment(CAMERA, sets), None)
    swap_before: dict[int, int] = {}
    for proc in world.processes:
        proc.killed.connect(lambda p: swap_before.__setitem__(p.pid, p.mm.swap))
    trio.run(world.runtime.run)
    invariants.check_all(world.scheduler, world.memory, world.processes, world.runtime.now)
    killed = [p for p in world.processes if p.killed_at is not None]
    for proc in killed:
        mm = proc.mm
        if proc.freed_at is not None:  # everything came back, once: nothing left, nothing negative
            # (file pages are unmapped by the exit itself, reapers zap anon and swap: a victim reaped before
            # the end but still exiting keeps them mapped)
            left = (mm.anon, mm.file if proc.exited_at is not None else 0, mm.swap, mm.zpool)
            assert left == (0, 0, 0, 0), proc.name
        else:  # what has not come back yet is still counted, never more than the process had
            assert mm.swap <= swap_before[proc.pid], proc.name


@settings(max_examples=4, deadline=None)
@given(worlds)
def test_random_worlds_give_the_same_bytes_twice(choices: dict[str, object]) -> None:
    sets = [f"{k}={v}" for k, v in choices.items()] + ["scenario.duration_s=1.0"]
    files = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(2):
            out = Path(tmp) / f"r{i}"
            run_experiment(load_experiment(CAMERA, sets), out)
            files.append(dir_bytes(out))
    assert files[0] == files[1]


@pytest.fixture(scope="module")
def dask_cluster():
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as c:
        yield c


@settings(max_examples=2, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(worlds)
def test_random_worlds_give_the_same_bytes_here_in_worker_processes_and_on_dask(dask_cluster, tmp_path_factory,
                                                                               choices: dict[str, object]) -> None:
    tmp = tmp_path_factory.mktemp("where")
    grid = parse_grid([f"{k}={v}" for k, v in choices.items() if k != "scenario.seed"])
    sets = ["scenario.duration_s=1.0", f"scenario.seed={choices['scenario.seed']}"]
    sweep(CAMERA, grid, 2, tmp / "local", sets=sets, workers=2)
    sweep(CAMERA, grid, 2, tmp / "dask", sets=sets, dask=dask_cluster.scheduler_address)
    here = tmp / "here"
    seed = choices["scenario.seed"]
    run_experiment(load_experiment(CAMERA, [*sets, *(f"{k}={v}" for k, v in choices.items())], seed=seed + 1), here)

    assert dir_bytes(tmp / "local") == dir_bytes(tmp / "dask")
    worker = dir_bytes(tmp / "local" / "runs" / "p000" / f"seed{seed + 1}")
    mine = dir_bytes(here)
    assert worker.keys() == mine.keys()
    # the config's own description differs (a sweep's point is a variant); everything simulated is the same
    for name in mine:
        if name not in ("summary.json", "trace.json"):
            assert worker[name] == mine[name], name
    assert worker["trace.json"].rsplit(b"\n]", 1)[0] == mine["trace.json"].rsplit(b"\n]", 1)[0]
    ours, theirs = json.loads(mine["summary.json"]), json.loads(worker["summary.json"])
    for key in ("config", "config_echo"):
        ours.pop(key), theirs.pop(key)
    assert ours == theirs
