"""``exitstorm validate``: multi-process storms on the real kernel and in the simulator, side by side.

A calibrated profile is fitted to single-process kills only; this checks
what it predicts for what it was not fitted on. Each cell kills ``count``
equal victims (all swapped, in ZRAM) together: without a reaper, or with an
lmkd-like reaper thread calling process_mrelease on each in kill order. The
preview cell runs the preview scenario (a SCHED_FIFO thread with a fixed CPU
budget every 16.7 ms while its storm dies) in both worlds. The simulator
runs the cells on the storm scenarios with the profile as their device and
the compression ratio the real victims got. Figures per cell: per-victim
kill → reap median and max, kill → 90% of the storm's ZRAM memory back, and
the preview's lateness p99, missed deadlines and response p99.
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path
from typing import Any, Callable

import trio
from attrs import asdict, frozen
from rich.table import Table

from actors.runtime import NS_PER_MS, NS_PER_S, NS_PER_US
from actors.sampler import Sampler
from exitstorm.config import Experiment, load_experiment
from exitstorm.experiment import build_world
from exitstorm.preview import Frame, Preview
from exitstorm.results import atomic_directory
from exitstorm.schema import ConfigError
from exitstorm.victims import POOL_SAMPLE_NS, RETURNED_SHARE, StormTiming, Victims, VictimSpec, check_random_bytes
from exitstorm.world import FrameStats
from exitstorm.zram import PAGE_SIZE, ZramSwap, require_host

#: the storm scenario the simulated side runs (its device is replaced by the profile)
DEFAULT_SCENARIO = Path("configs/vm_storm.toml")
#: the storm with a preview: its [[periodic]] "preview" is what the real kernel runs too
DEFAULT_PREVIEW_SCENARIO = Path("configs/vm_storm_preview.toml")
COUNTS = (1, 2, 4, 8)
#: after the victims' pageout, before the kills: let its aftermath (kswapd, ZRAM writes) settle
SETTLE_S = 0.1
#: the real preview's first release comes this long after it is started (its process must be up)
PREVIEW_LEAD_NS = 20 * NS_PER_MS


@frozen
class Cell:
    count: int
    mrelease: bool
    preview: bool = False

    @property
    def name(self) -> str:
        return f"N={self.count}" + (" mrelease" if self.mrelease else "") + (" preview" if self.preview else "")


def cells(preview_count: int) -> list[Cell]:
    return [Cell(n, mrelease) for mrelease in (False, True) for n in COUNTS] + [Cell(preview_count, False, True)]


@frozen
class PreviewSpec:
    """The preview scenario's preview, as the real kernel runs it."""

    period_ns: int
    budget_ns: int
    prio: int
    frames: int
    #: the storm's SIGKILLs, after the preview's first release
    kill_after_ns: int


def preview_spec(exp: Experiment) -> PreviewSpec:
    """The ``[[periodic]]`` named "preview" of a storm scenario (SCHED_FIFO, as the real process runs)."""
    sc = exp.config
    spec = next((p for p in sc.periodic if p.name == "preview"), None)
    if spec is None or spec.thread.policy != "fifo":
        raise ConfigError(f"{exp.source}: periodic: expected a [[periodic]] named \"preview\" with policy \"fifo\" "
                          f"(the real kernel runs it as SCHED_FIFO)")
    if sc.storm is None or sc.storm.kill_at_ms < spec.start_ms:
        raise ConfigError(f"{exp.source}: storm.kill_at_ms: expected a storm killed at or after the preview's "
                          f"start_ms ({spec.start_ms})")
    period_ns = round(spec.period_us * NS_PER_US)
    run_ns = round((sc.scenario.duration_s * NS_PER_S) - spec.start_ms * NS_PER_MS)
    return PreviewSpec(period_ns, round(spec.budget_us * NS_PER_US), spec.thread.prio,
                       -(-run_ns // period_ns),  # the frames released before the run ends
                       round((sc.storm.kill_at_ms - spec.start_ms) * NS_PER_MS))


#: figure key → (label, unit)
FIGURES: dict[str, tuple[str, str]] = {
    "exit_median_ms": ("kill→reap median", "ms"),
    "exit_max_ms": ("kill→reap max", "ms"),
    "returned_ms": ("kill→90% returned", "ms"),
    "preview_lateness_p99_ms": ("preview late p99", "ms"),
    "preview_misses": ("preview misses", "frames"),
    "preview_response_p99_ms": ("preview resp. p99", "ms"),
}


def storm_figures(exit_ns: list[int], returned_ns: int | None) -> dict[str, float | None]:
    return {
        "exit_median_ms": statistics.median(exit_ns) / NS_PER_MS,
        "exit_max_ms": max(exit_ns) / NS_PER_MS,
        "returned_ms": None if returned_ns is None else returned_ns / NS_PER_MS,
    }


def frame_figures(stats: FrameStats) -> dict[str, float | None]:
    """The preview's figures, from the same recorder the simulator's runs use."""
    return {
        "preview_lateness_p99_ms": stats.lateness.percentiles_ms().get("p99"),
        "preview_misses": stats.janky,
        "preview_response_p99_ms": stats.response.percentiles_ms().get("p99"),
    }


def real_frame_stats(frames: list[Frame], period_ns: int) -> FrameStats:
    stats = FrameStats("preview", period_ns, NS_PER_S, lambda *_a, **_k: None)
    start = frames[0][1] if frames else 0
    for k, release, done in frames:
        stats.on_frame(k, release - start, done - start)
    return stats


def returned_at(samples: list[tuple[int, int]], kill_ns: int) -> int | None:
    """When (after ``kill_ns``) the sampled pool was down by 90% of its size at the kill; None if never."""
    at_kill = next((v for t, v in reversed(samples) if t <= kill_ns), None)
    if at_kill is None:
        return None
    target = at_kill - RETURNED_SHARE * at_kill
    return next((t - kill_ns for t, v in samples if t > kill_ns and v <= target), None)


def relative_error(sim: float | None, real: float | None) -> float | None:
    """(sim - real) / real; None where it is undefined (a figure missing, or real = 0)."""
    if sim is None or real is None or real == 0:
        return None
    return (sim - real) / real


def _by_figure(runs: list[dict[str, float | None]]) -> dict[str, list[float]]:
    """Per figure any repeat has, the values measured."""
    return {key: [r[key] for r in runs if r.get(key) is not None] for key in FIGURES if any(key in r for r in runs)}


def median_figures(runs: list[dict[str, float | None]]) -> dict[str, float | None]:
    """Per figure, the median over repeats of the values measured."""
    return {key: statistics.median(values) if values else None for key, values in _by_figure(runs).items()}


def figure_ranges(runs: list[dict[str, float | None]]) -> dict[str, list[float] | None]:
    """Per figure, [lowest, highest] over repeats: how much the real machine varies from one storm to the next."""
    return {key: [min(values), max(values)] if values else None for key, values in _by_figure(runs).items()}


def sim_overrides(profile: Path, cell: Cell, swapped_mb: int, ratio: float) -> list[str]:
    """``--set`` overrides turning a storm scenario into ``cell`` on ``profile``."""
    return [
        f"device={json.dumps(str(profile.resolve()))}",
        f"storm.count={cell.count}",
        f"storm.swapped_mb={swapped_mb}",
        "storm.resident_mb=0",
        "storm.file_mb=0",
        f"storm.compression_ratio={ratio!r}",
        f"storm.reapers={1 if cell.mrelease else 0}",
        'policies.reap="process_mrelease"',
        "scenario.events=[]",
    ]


def reaper_nice(scenario: Path) -> int:
    """The nice value of the storm scenario's ``reaper_thread``: the real harness's reaper thread runs at it too."""
    exp = load_experiment(scenario, ["storm.reapers=1", 'policies.reap="process_mrelease"'])
    thread = exp.config.storm.reaper_thread
    if thread.policy != "fair":
        raise ConfigError(f"{exp.source}: storm.reaper_thread.policy: expected \"fair\" (the real reaper thread "
                          f"runs at its nice value), got {thread.policy!r}")
    return thread.nice


def simulate(scenario: Path, profile: Path, cell: Cell, swapped_mb: int, ratio: float) -> dict[str, float | None]:
    """The cell in the simulator (the storm ``scenario`` made into it): its figures."""
    exp = load_experiment(scenario, sim_overrides(profile, cell, swapped_mb, ratio))
    world = build_world(exp, None)
    pool = world.runtime.add(Sampler("zpool_sampler", POOL_SAMPLE_NS, lambda: world.memory.zpool))
    trio.run(world.runtime.run)
    unfinished = [p.name for p in world.processes if p.exited_at is None]
    if unfinished:
        raise ConfigError(f"{exp.source}: scenario.duration_s: expected long enough for every exit to finish "
                          f"({len(unfinished)} victims still exiting at the end)")
    kill_ns = world.processes[0].killed_at
    figures = storm_figures([p.exited_at - p.killed_at for p in world.processes], returned_at(pool.samples, kill_ns))
    if cell.preview:
        figures.update(frame_figures(world.frames["preview"]))
    return figures


def measure(victims: Victims, cell: Cell, spec: VictimSpec, preview: PreviewSpec, nice: int
            ) -> tuple[dict[str, float | None], StormTiming]:
    """The cell on the real kernel, once (its reaper, if any, at ``nice``): its figures and the raw timing."""
    storm = victims.spawn_storm(spec, cell.count)
    time.sleep(SETTLE_S)
    reaper = nice if cell.mrelease else None
    if not cell.preview:
        timing = victims.kill_storm(storm, reaper)
        return storm_figures(timing.exit_ns, timing.returned_ns), timing
    start = time.monotonic_ns() + PREVIEW_LEAD_NS
    with Preview(preview.period_ns, preview.budget_ns, preview.frames, start, preview.prio) as running:
        time.sleep(max(0, start + preview.kill_after_ns - time.monotonic_ns()) / NS_PER_S)
        timing = victims.kill_storm(storm, reaper)
        frames = running.frames(timeout_s=preview.frames * preview.period_ns / NS_PER_S + 30)
    figures = storm_figures(timing.exit_ns, timing.returned_ns)
    figures.update(frame_figures(real_frame_stats(frames, preview.period_ns)))
    return figures, timing


def validate(profile: Path, out: Path, *, swapped_mb: int, random_bytes: int, repeats: int,
             scenario: Path = DEFAULT_SCENARIO, preview_scenario: Path = DEFAULT_PREVIEW_SCENARIO,
             force: bool = False, on_step: Callable[[int, int, str], None] | None = None) -> dict[str, Any]:
    """Measure every cell ``repeats`` times, simulate it, and write ``out`` (validation.json, validation.png).

    ``on_step(done, total, what)`` reports each step (as calibrate's ``on_kill``)."""
    for option, value in (("--swapped-mb", swapped_mb), ("--repeats", repeats)):
        if value < 1:
            raise ConfigError(f"{option}: expected an integer >= 1, got {value}")
    check_random_bytes(random_bytes)
    require_host()
    spec = VictimSpec(swapped_mb, 0, random_bytes)
    preview_exp = load_experiment(preview_scenario)
    preview = preview_spec(preview_exp)
    todo = cells(preview_exp.config.storm.count)

    def scenario_of(cell: Cell) -> Path:
        return preview_scenario if cell.preview else scenario

    for cell in todo:  # the profile and scenarios are valid before anything is measured
        load_experiment(scenario_of(cell), sim_overrides(profile, cell, swapped_mb, PAGE_SIZE / random_bytes))
    nice = reaper_nice(scenario)
    steps = len(todo) * repeats + len(todo)
    done = 0
    real: dict[Cell, list[dict[str, float | None]]] = {cell: [] for cell in todo}
    raw: dict[Cell, list[dict[str, Any]]] = {cell: [] for cell in todo}
    with atomic_directory(out, force) as tmp:
        with ZramSwap(), Victims() as victims:
            for _ in range(repeats):
                for cell in todo:
                    if on_step is not None:
                        on_step(done, steps, f"real: {cell.name}")
                    figures, timing = measure(victims, cell, spec, preview, nice)
                    real[cell].append(figures)
                    raw[cell].append(asdict(timing))
                    done += 1
        ratio = statistics.median(t["compression_ratio"] for runs in raw.values() for t in runs)
        rows = []
        for cell in todo:
            if on_step is not None:
                on_step(done, steps, f"simulated: {cell.name}")
            measured = median_figures(real[cell])
            simulated = simulate(scenario_of(cell), profile, cell, swapped_mb, ratio)
            rows.append({
                "cell": asdict(cell) | {"name": cell.name},
                "real": measured,
                "real_range": figure_ranges(real[cell]),
                "simulated": simulated,
                "relative_error": {k: relative_error(simulated.get(k), v) for k, v in measured.items()},
                "real_runs": raw[cell],
            })
            done += 1
        report = {
            "profile": str(profile),
            "scenario": str(scenario),
            "preview_scenario": str(preview_scenario),
            "swapped_mb": swapped_mb,
            "random_bytes": random_bytes,
            "compression_ratio": ratio,
            "repeats": repeats,
            "preview": {"period_ms": preview.period_ns / NS_PER_MS, "budget_ms": preview.budget_ns / NS_PER_MS,
                        "prio": preview.prio, "frames": preview.frames,
                        "kill_after_ms": preview.kill_after_ns / NS_PER_MS},
            "figures": {k: {"label": label, "unit": unit} for k, (label, unit) in FIGURES.items()},
            "cells": rows,
        }
        (tmp / "validation.json").write_text(json.dumps(report, indent=2) + "\n")
        plot(report, tmp / "validation.png")
    return report


def _value(value: float | None, unit: str) -> str:
    if value is None:
        return "—"
    return f"{value:.0f}" if unit == "frames" or value >= 100 else f"{value:.1f}"


def validation_table(report: dict[str, Any]) -> Table:
    """Real vs simulated per cell and figure, with the relative error."""
    t = Table(title=f"{report['profile']}: N victims of {report['swapped_mb']} MB swapped killed together; "
                    f"real = median (range) of {report['repeats']}; error = (sim - real) / real")
    for column, justify in (("cell", "left"), ("figure", "left"), ("real", "right"), ("range", "right"),
                            ("sim", "right"), ("error", "right")):
        t.add_column(column, justify=justify, no_wrap=True)
    for row in report["cells"]:
        first = True
        for key, real in row["real"].items():
            label, unit = report["figures"][key]["label"], report["figures"][key]["unit"]
            err = row["relative_error"][key]
            span = row["real_range"][key]
            t.add_row(row["cell"]["name"] if first else "", f"{label} ({unit})", _value(real, unit),
                      "—" if span is None else f"{_value(span[0], unit)}–{_value(span[1], unit)}",
                      _value(row["simulated"].get(key), unit), "—" if err is None else f"{err:+.0%}",
                      end_section=key == list(row["real"])[-1])
            first = False
    return t


def plot(report: dict[str, Any], path: Path) -> None:
    """Real (solid) vs simulated (dashed) against the number of victims, without and with the reaper."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = ("exit_median_ms", "exit_max_ms", "returned_ms")
    fig, axes = plt.subplots(1, len(keys), figsize=(4.2 * len(keys), 3.6), constrained_layout=True)
    for ax, key in zip(axes, keys):
        for mrelease, color in ((False, "tab:blue"), (True, "tab:orange")):
            rows = [r for r in report["cells"] if r["cell"]["mrelease"] == mrelease and not r["cell"]["preview"]]
            counts = [r["cell"]["count"] for r in rows]
            label = "process_mrelease" if mrelease else "no reaper"
            real = [r["real"][key] for r in rows]
            spread = [[v - r["real_range"][key][0] for v, r in zip(real, rows)],
                      [r["real_range"][key][1] - v for v, r in zip(real, rows)]]
            ax.errorbar(counts, real, yerr=spread, fmt="o-", color=color, capsize=3, label=f"real, {label} (range)")
            ax.plot(counts, [r["simulated"][key] for r in rows], "s--", color=color, label=f"simulated, {label}")
        label, unit = report["figures"][key]["label"], report["figures"][key]["unit"]
        ax.set_title(label)
        ax.set_xlabel("victims killed together")
        ax.set_ylabel(unit)
        ax.set_xscale("log", base=2)
        ax.set_xticks(list(COUNTS), [str(c) for c in COUNTS])
        ax.grid(True, alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle(f"{report['profile']}: {report['swapped_mb']} MB swapped per victim, "
                 f"median of {report['repeats']}", fontsize=9)
    fig.savefig(path, dpi=120)
    plt.close(fig)
