"""Run one experiment and write its results directory.

Layout (DESIGN §8): ``events.jsonl``, ``summary.json`` and
``histograms/NAME.hlog`` + ``NAME.hgrm``. Nothing in the outputs depends on
wall-clock time or on the machine, so the same config and seed give the same
bytes.
"""

from __future__ import annotations

import json
import sys
from importlib.metadata import version
from pathlib import Path
from typing import Any

import trio

from actors.memory import PAGES_PER_MB
from exitstorm.config import Experiment
from exitstorm.results import atomic_directory
from exitstorm.schema import ConfigError
from exitstorm.world import World


def cpu_accounting(world: World) -> dict[str, Any]:
    """CPU time by thread class and idle, in ns and as shares of cores x elapsed."""
    sched = world.scheduler
    elapsed = world.runtime.now
    capacity_ns = len(sched.cores) * elapsed
    by_class: dict[str, int] = {}
    for core in sched.cores:
        for cls, ns in core.busy.items():
            by_class[cls] = by_class.get(cls, 0) + ns
    idle = sum(core.idle_ns for core in sched.cores)
    run = sum(th.run_ns for th in sched.threads)
    spin = sum(th.spin_ns for th in sched.threads)
    share = {cls: round(ns / capacity_ns, 6) for cls, ns in sorted(by_class.items())} if capacity_ns else {}
    share["idle"] = round(idle / capacity_ns, 6) if capacity_ns else 0.0
    return {
        "cpu_share": share,
        "cpu_time_ns": {"run": run, "spin": spin, "idle": idle, "cores_x_elapsed": capacity_ns},
    }


def exit_profile(world: World) -> dict[str, dict[str, float]]:
    """Inclusive CPU time per function under do_exit, summed over exiting tasks (like function_graph)."""
    inclusive: dict[str, int] = {}
    for (_th, stack), ns in world.scheduler.frame_ns.items():
        if not stack or stack[0] != "do_exit":
            continue
        for fn in dict.fromkeys(stack):
            inclusive[fn] = inclusive.get(fn, 0) + ns
    total = inclusive.get("do_exit", 0)
    return {
        fn: {"ms": round(ns / 1e6, 3), "share": round(ns / total, 4)}
        for fn, ns in sorted(inclusive.items(), key=lambda kv: (-kv[1], kv[0]))
    } if total else {}


def folded_profile(world: World) -> str:
    """Folded stacks (flamegraph.pl, inferno, speedscope): ``frame;frame;frame ns`` per line."""
    stacks: dict[str, int] = {}
    for (th, stack), ns in world.scheduler.frame_ns.items():
        key = ";".join(stack) if stack else th.thread_class
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
            "swapped_mb": round(proc.swapped_at_kill / PAGES_PER_MB, 3),
            "resident_mb": round(proc.resident_at_kill / PAGES_PER_MB, 3),
            "killed_ms": round(proc.killed_at / 1e6, 6),
            "kill_to_exit_ms": None if proc.exited_at is None else round((proc.exited_at - proc.killed_at) / 1e6, 6),
            "kill_to_freed_ms": None if proc.freed_at is None else round((proc.freed_at - proc.killed_at) / 1e6, 6),
        })
    return rows


def memory_summary(world: World) -> dict[str, Any]:
    mem = world.memory
    mem.psi.flush()
    return {
        "total_mb": round(mem.total / PAGES_PER_MB, 3),
        "free_mb_end": round(mem.free / PAGES_PER_MB, 3),
        "free_mb_min": round(mem.min_free / PAGES_PER_MB, 3),
        "zram_pool_mb_end": round(mem.zpool / PAGES_PER_MB, 3),
        "swap_used_mb_end": round(mem.swap_used / PAGES_PER_MB, 3),
        "watermarks_mb": {k: round(v / PAGES_PER_MB, 3) for k, v in
                          (("min", mem.wmark_min), ("low", mem.wmark_low), ("high", mem.wmark_high))},
        "reclaimed_mb": round(mem.reclaimed / PAGES_PER_MB, 3),
        "direct_reclaim_ms": round(mem.direct_reclaim_ns / 1e6, 6),
        "psi_some_ms": round(mem.psi.some_ns / 1e6, 6),
        "psi_full_ms": round(mem.psi.full_ns / 1e6, 6),
    }


def locks_summary(world: World) -> dict[str, dict[str, Any]]:
    return {
        name: {"acquired": lk.acquired, "contended": lk.contended, "wait_ms": round(lk.wait_ns / 1e6, 6),
               "held_ms": round(lk.held_ns / 1e6, 6), "line_transfers": lk.transfers}
        for name, lk in sorted(world.scheduler.locks.items()) if lk.acquired
    }


def summarize(world: World) -> dict[str, Any]:
    exp = world.experiment
    sched = world.scheduler
    frames = {
        name: {
            "frames": st.lateness.count,
            "janky": st.janky,
            "lateness_ms": st.lateness.percentiles_ms(),
            "response_ms": st.response.percentiles_ms(),
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
        "duration_ms": world.runtime.now / 1e6,
        "frames": frames,
        **cpu_accounting(world),
        "sched_delay_ms": {cls: rec.percentiles_ms() for cls, rec in sorted(world.sched_delay.items())},
        "metrics": {
            "exit_latency_ms": world.exit_latency.percentiles_ms(),
            "exit_freed_latency_ms": world.freed_latency.percentiles_ms(),
        },
        "exits": exits(world),
        "exit_profile": exit_profile(world),
        "memory": memory_summary(world),
        "locks": locks_summary(world),
        "scheduler": {
            "events": world.runtime.events_processed,
            "wakeups": sum(th.wakeups for th in sched.threads),
            "preemptions": sum(th.preemptions for th in sched.threads),
            "threads": len(sched.threads),
        },
        "config_echo": exp.raw,
    }


def run_experiment(exp: Experiment, out: Path, force: bool = False) -> dict[str, Any]:
    """Run ``exp`` and atomically write its results directory at ``out``."""
    with atomic_directory(out, force) as tmp:
        with (tmp / "events.jsonl").open("w") as events_out:
            try:
                world = World(exp, events_out)
            except ValueError as exc:
                raise ConfigError(f"{exp.source}: impossible combination: {exc}") from None
            trio.run(world.runtime.run)
        summary = summarize(world)
        hist_dir = tmp / "histograms"
        recorders = [rec for st in world.frames.values() for rec in (st.lateness, st.response)]
        recorders += [world.sched_delay[k] for k in sorted(world.sched_delay)]
        if world.processes:
            recorders += [world.exit_latency, world.freed_latency]
        (tmp / "profile.folded").write_text(folded_profile(world))
        for rec in recorders:
            rec.write(hist_dir, world.runtime.now)
        (tmp / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary
