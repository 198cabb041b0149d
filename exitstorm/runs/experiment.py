"""Run one experiment and write its results directory.

Layout (docs/design.md §8): ``events.jsonl``, ``summary.json`` and
``histograms/NAME.hlog`` + ``NAME.hgrm``. Nothing in the outputs depends on
wall-clock time or on the machine, so the same config and seed give the same
bytes.
"""

from __future__ import annotations

import json
import sys
from importlib.metadata import version
from pathlib import Path
from typing import IO, Any, Callable

import trio

from actors.checks import invariants
from actors.cpu.scheduler import Scheduler, Thread
from actors.runtime.quantities import NS_PER_MS
from exitstorm.lab.config import Experiment
from exitstorm.lab.units import mb, ms
from exitstorm.lab.world import World, slow_exits, window_stats
from exitstorm.lifecycle import deferred_interrupts
from exitstorm.outputs.results import atomic_directory
from exitstorm.runs.trace import write_trace
from exitstorm.schema import ConfigError


def shares(busy: dict[str, int], capacity_ns: int) -> dict[str, float]:
    """CPU time by class as shares of ``capacity_ns`` (cores x elapsed), plus the idle rest."""
    if not capacity_ns:
        return {}
    out = {cls: round(ns / capacity_ns, 6) for cls, ns in sorted(busy.items())}
    out["idle"] = round((capacity_ns - sum(busy.values())) / capacity_ns, 6)
    return out


def cpu_accounting(world: World) -> dict[str, Any]:
    """CPU time by thread class, over the whole run and over the storm window.

    The storm window runs from the first kill until every killed process has
    exited and had its memory returned (or to the end of the run).
    """
    sched = world.scheduler
    elapsed = world.runtime.now
    ncores = len(sched.cores)
    busy = sched.busy_by_class()
    idle = sum(core.idle_ns for core in sched.cores)
    run = sum(th.run_ns for th in sched.threads)
    spin = sum(th.spin_ns for th in sched.threads)
    storm: dict[str, Any] = {"window_ms": None, "share": None}
    if world.storm_start is not None:
        t0, busy0 = world.storm_start
        still_exiting = any(p.killed_at is not None and (p.exited_at is None or p.freed_at is None)
                            for p in world.processes)
        t1, busy1 = (elapsed, busy) if still_exiting or world.storm_last_exit is None else world.storm_last_exit
        delta = {cls: d for cls, ns in busy1.items() if (d := ns - busy0.get(cls, 0))}
        storm = {"window_ms": [ms(t0), ms(t1)], "share": shares(delta, ncores * (t1 - t0))}
    load = sched.capacity_busy() / (sched.total_capacity * elapsed) if elapsed else 0.0
    return {
        "cpu_share": {"whole_run": shares(busy, ncores * elapsed), "storm": storm, **cpu_timeline(world),
                      "load_whole_run": round(load, 6)},
        "cpu_time_ns": {"run": run, "spin": spin, "idle": idle, "cores_x_elapsed": ncores * elapsed},
    }


def cpu_timeline(world: World) -> dict[str, Any]:
    """CPU share by thread class per window (``scenario.cpu_window_ms``), and the peak of exit work.

    Exit work is the classes of ``ScenarioConfig.exit_work_classes`` (exiting
    tasks, reapers, kworkers): the peak is the largest share they took in a window.
    """
    samples = world.cpu_sampler.samples
    ncores = len(world.scheduler.cores)
    end = world.end_cpu_windows()
    if samples and samples[-1][0] < end[0]:
        samples = samples + [end]
    classes = sorted({cls for _, busy in samples for cls in busy})
    t_ms: list[float] = []
    share: dict[str, list[float]] = {cls: [] for cls in classes}
    for (t0, b0), (t1, b1) in zip(samples, samples[1:]):
        cap = ncores * (t1 - t0)
        t_ms.append(ms(t0))
        for cls in classes:
            share[cls].append(round((b1.get(cls, 0) - b0.get(cls, 0)) / cap, 6))
    peak, peak_at = world.exit_peak
    load, load_at = world.load_peak
    return {
        "timeline": {"window_ms": world.cpu_sampler.period_ns / NS_PER_MS, "t_ms": t_ms, "share": share},
        "exit_work_peak": {"share": round(peak, 6), "t_ms": ms(peak_at), "classes": world.exit_classes},
        "load_peak": {"share": round(load, 6), "t_ms": ms(load_at)},
    }


def camera_metrics(world: World) -> dict[str, Any]:
    """The preview's frames, janky frames and stutter, and free memory when it started."""
    stats = world.frames.get("preview") if world.camera is not None else None
    if stats is None:
        return {"frames": None, "janky_frames": None, "stutter": None, "free_mb_at_preview_start": None,
                "preview_start_ms": None, "free_mb_preview_init": None, "camera_direct_reclaim_ms": None}
    camera = world.experiment.config.camera
    window = camera.preview.stutter_window_frames
    start = world.preview_start
    init = None
    if start is not None:
        half = camera.preview.init_window_ns // 2
        free = window_stats([(t, sample.free) for t, sample in world.sampler.samples], start[0] - half,
                            start[0] + half)
        if free is not None:
            init = {"window_ms": [ms(start[0] - half), ms(start[0] + half)], "mean": mb(free[0]), "min": mb(free[1])}
    return {
        "frames": stats.lateness.count,
        "janky_frames": stats.janky,
        "stutter": stats.first_janky is not None and stats.first_janky < window,
        "free_mb_at_preview_start": None if start is None else mb(start[1]),
        "preview_start_ms": None if start is None else ms(start[0]),
        "free_mb_preview_init": init,
        "camera_direct_reclaim_ms": ms(world.memory.direct_reclaim_by_class.get(camera.thread.thread_class, 0)),
    }


def slow_exit_summary(world: World) -> dict[str, Any]:
    """Exits slower than ``scenario.slow_exit_ms`` (those still exiting at the end after longer included) and
    the mean kill → exit of the finished ones among them."""
    limit = world.experiment.config.scenario.slow_exit_ns
    count, mean_ns = slow_exits([(p.killed_at, p.exited_at) for p in world.processes if p.killed_at is not None],
                                world.runtime.now, limit)
    return {"over_ms": ms(limit), "count": count, "mean_ms": None if mean_ns is None else ms(round(mean_ns))}


def kill_log(world: World) -> list[dict[str, Any]]:
    """LMKD's kills in order: victim, adj, sizes at the kill, decision / SIGKILL / exit / memory-returned times.

    A kill decided but not yet delivered when the run ends (a cgroup.kill waiting for cgroup_mutex) comes
    last, in decision order, with no kill time."""
    rows = []
    chosen = [p for p in world.processes if p.pid in world.kill_reasons]
    for proc in sorted(chosen, key=lambda p: (p.killed_at is None, p.killed_at or world.kill_reasons[p.pid][3],
                                                    p.pid)):
        reason, min_adj, via, decided = world.kill_reasons[proc.pid]
        rows.append({
            "victim": proc.name, "pid": proc.pid, "adj": proc.adj, "reason": reason, "min_adj": min_adj, "via": via,
            "resident_mb": mb(proc.resident_at_kill),
            "swapped_mb": mb(proc.swapped_at_kill),
            "t_decision_ms": ms(decided),
            "t_kill_ms": ms(proc.killed_at),
            "t_exit_ms": ms(proc.exited_at),
            "t_freed_ms": ms(proc.freed_at),
        })
    return rows


def exit_profile(world: World) -> dict[str, dict[str, float]]:
    """Inclusive CPU time per function under do_exit, summed over exiting tasks (like function_graph)."""
    inclusive: dict[str, int] = {}
    for (_th, frame), ns in world.scheduler.frame_ns.items():
        if not frame or frame[0] != "do_exit":
            continue
        for fn in dict.fromkeys(frame):
            inclusive[fn] = inclusive.get(fn, 0) + ns
    total = inclusive.get("do_exit", 0)
    return {
        fn: {"ms": round(ns / NS_PER_MS, 3), "share": round(ns / total, 4)}
        for fn, ns in sorted(inclusive.items(), key=lambda kv: (-kv[1], kv[0]))
    } if total else {}


def profile_root(th: Thread, by: str) -> str:
    """The frame a stack is filed under in ``profile.folded`` (``scenario.profile_by``); "" for none."""
    if by == "thread_class":
        return th.thread_class
    if by == "process":
        return th.owner.name if th.owner is not None else th.name
    return ""


def folded_profile(world: World) -> str:
    """Folded stacks (flamegraph.pl, inferno, speedscope): ``frame;frame;frame ns`` per line.

    With ``scenario.profile_by`` a root frame (thread class or process) splits
    the flame graph into one tower per class or process, as ``perf script |
    stackcollapse-perf.pl --pid`` does for processes.
    """
    by = world.experiment.config.scenario.profile_by
    stacks: dict[str, int] = {}
    for th in world.scheduler.threads:
        root = profile_root(th, by)
        for stack, ns in th.stack_ns.items():
            key = stack or th.thread_class
            if root:
                key = f"{root};{key}" if stack else root
            stacks[key] = stacks.get(key, 0) + ns
    return "".join(f"{key} {ns}\n" for key, ns in sorted(stacks.items()))


def exits(world: World) -> list[dict[str, Any]]:
    rows = []
    for proc in world.processes:
        if proc.killed_at is None:
            continue
        rows.append({
            "pid": proc.pid,
            "name": proc.name,
            "swapped_mb": mb(proc.swapped_at_kill),
            "resident_mb": mb(proc.resident_at_kill),
            "killed_ms": ms(proc.killed_at),
            "kill_to_exit_ms": None if proc.exited_at is None else ms(proc.exited_at - proc.killed_at),
            "kill_to_freed_ms": None if proc.freed_at is None else ms(proc.freed_at - proc.killed_at),
        })
    return rows


def memory_summary(world: World) -> dict[str, Any]:
    mem = world.memory
    mem.psi.flush()
    return {
        "total_mb": mb(mem.total),
        "free_mb_end": mb(mem.free),
        "free_mb_min": mb(mem.min_free),
        "zram_pool_mb_end": mb(mem.zpool),
        "swap_used_mb_end": mb(mem.swap_used),
        "watermarks_mb": {k: mb(v) for k, v in
                          (("min", mem.wmark_min), ("low", mem.wmark_low), ("high", mem.wmark_high))},
        "reclaimed_mb": mb(mem.reclaimed),
        "direct_reclaim_ms": {
            "total": ms(mem.direct_reclaim_ns),
            "by_class": {cls: ms(ns) for cls, ns in sorted(mem.direct_reclaim_by_class.items())},
        },
        "psi_some_ms": ms(mem.psi.some_ns),
        "psi_full_ms": ms(mem.psi.full_ns),
    }


def locks_summary(world: World) -> dict[str, dict[str, Any]]:
    return {
        name: {"acquired": lk.acquired, "contended": lk.contended, "wait_ms": ms(lk.wait_ns),
               "held_ms": ms(lk.held_ns), "line_transfers": lk.transfers}
        for name, lk in sorted(world.scheduler.locks.items()) if lk.acquired
    }


def cpu_by_capacity(sched: Scheduler, th: Thread) -> dict[str, float]:
    """ms ``th`` ran on the cores of each capacity (a big.LITTLE cluster), smallest first, keyed by the
    capacity on the kernel's 0..1024 scale."""
    by: dict[int, int] = {}
    for core, ns in zip(sched.cores, sched.ran_on(th)):
        by[core.capacity] = by.get(core.capacity, 0) + ns
    return {str(cap): ms(ns) for cap, ns in sorted(by.items())}


def summarize(world: World) -> dict[str, Any]:
    exp = world.experiment
    sched = world.scheduler
    memory = memory_summary(world)
    thread = {th.name: th for th in sched.threads}
    periodic = {
        name: {
            "frames": st.lateness.count,
            "janky": st.janky,
            "lateness_ms": st.lateness.percentiles_ms(),
            "response_ms": st.response.percentiles_ms(),
            "cpu_ms_by_capacity": cpu_by_capacity(sched, thread[name]),
        }
        for name, st in world.frames.items()
    }
    return {
        "exitstorm": version("exitstorm"),
        "python": f"{sys.version_info.major}.{sys.version_info.minor}",
        "config": exp.source,
        "seed": exp.config.scenario.seed,
        "device": exp.device.name,
        "kernel": exp.kernel.name,
        "duration_ms": world.runtime.now / NS_PER_MS,
        **camera_metrics(world),
        "kills": sum(p.killed_at is not None for p in world.processes),
        "exiting_at_end": sum(p.killed_at is not None and p.exited_at is None for p in world.processes),
        "slow_exits": slow_exit_summary(world),
        "metrics": {
            "frame_lateness_ms": world.frames["preview"].lateness.percentiles_ms() if world.camera else None,
            "exit_latency_ms": world.exit_latency.percentiles_ms(),
            "exit_freed_latency_ms": world.freed_latency.percentiles_ms(),
            "direct_reclaim_stall_ms": world.direct_reclaim.percentiles_ms(),
        },
        "direct_reclaim_ms": memory["direct_reclaim_ms"],
        "kill_log": kill_log(world),
        "periodic": periodic,
        **cpu_accounting(world),
        "sched_delay_ms": {cls: rec.percentiles_ms() for cls, rec in sorted(world.sched_delay.items())},
        "exits": exits(world),
        "exit_profile": exit_profile(world),
        "memory": memory,
        "free_memory_mb": {
            "period_ms": world.sampler.period_ns / NS_PER_MS,
            "t_ms": [ms(t) for t, _ in world.sampler.samples],
            "mb": [mb(sample.free) for _, sample in world.sampler.samples],
        },
        "cpu_util": {
            "period_ms": world.util_sampler.period_ns / NS_PER_MS,
            "t_ms": [ms(t) for t, _ in world.util_sampler.samples],
            "by_cpu": [list(u) for u in zip(*(cores for _, cores in world.util_sampler.samples))],
        },
        "locks": locks_summary(world),
        "scheduler": {
            "events": world.runtime.events_processed,
            "wakeups": sum(th.wakeups for th in sched.threads),
            "preemptions": sum(th.preemptions for th in sched.threads),
            "threads": len(sched.threads),
        },
        "config_echo": exp.raw,
    }


def build_world(exp: Experiment, events_out: IO[str] | None) -> World:
    """The world of ``exp``; a combination of valid values that cannot be built is bad input."""
    try:
        return World(exp, events_out)
    except ValueError as exc:
        raise ConfigError(f"{exp.source}: impossible combination: {exc}") from None


def run_experiment(exp: Experiment, out: Path, force: bool = False,
                   on_world: Callable[[World], None] | None = None) -> dict[str, Any]:
    """Run ``exp`` and atomically write its results directory at ``out``.

    ``on_world`` (a progress display) gets the world before it runs.
    """
    with atomic_directory(out, force) as tmp:
        with (tmp / "events.jsonl").open("w") as events_out:
            world = build_world(exp, events_out)
            if on_world is not None:
                on_world(world)
            with deferred_interrupts(world.runtime.stop):
                trio.run(world.runtime.run)
            invariants.check_all(world.scheduler, world.memory, world.processes, world.runtime.now)
        summary = summarize(world)
        hist_dir = tmp / "histograms"
        recorders = [rec for st in world.frames.values() for rec in (st.lateness, st.response)]
        recorders += [world.sched_delay[k] for k in sorted(world.sched_delay)]
        if world.processes:
            recorders += [world.exit_latency, world.freed_latency]
        if world.direct_reclaim.count:
            recorders.append(world.direct_reclaim)
        (tmp / "profile.folded").write_text(folded_profile(world))
        if world.timeline.max_records:
            write_trace(world, tmp / "trace.json")
        for rec in recorders:
            rec.write(hist_dir, world.runtime.now)
        (tmp / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary
