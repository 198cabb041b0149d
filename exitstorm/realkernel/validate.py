"""``exitstorm validate``: storms on the real kernel and in the simulator, side by side, where the jank is.

A calibrated profile is fitted to single-process kills only; this checks
what it predicts for what it was not fitted on. Each cell kills ``count``
equal victims together, all swapped (in ZRAM) unless it says otherwise:

* the storm curve, N = 1..16 without a reaper;
* at N = 8 (the preview scenario's storm): the victims all resident, the
  control that should contend little; process_mrelease from a reaper thread
  at nice 0 on victims left at nice 0; and from an lmkd-like reaper (the
  storm scenario's reaper thread, nice −20) that boosts every thread of each
  victim to nice −20 before the kills, as lmkd's set_process_group_and_prio;
* the preview scenario's preview (a fixed CPU budget every 16.7 ms) while
  the N = 8 storm dies: as its SCHED_FIFO thread and as a fair nice-0
  thread, each with victims at nice 0 and boosted to −20 (no reaper).

The simulator runs each cell once on the storm scenarios with the profile as
their device and the compression ratio the real victims got; a victim boosted
before its kill is one at nice −20 from the start (it sleeps until the kill).
Figures per cell: per-victim kill → reap min, median and max, kill → 90% of
the storm's ZRAM memory back (not for the resident control: nothing of it is
in ZRAM), and the preview's lateness p99 and max, missed deadlines and
response p99.
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path
from typing import Any, Callable, Literal

import trio
from attrs import asdict, frozen
from rich.table import Table

from actors.runtime.quantities import NS_PER_MS, NS_PER_S, NS_PER_US
from exitstorm.lab.config import Experiment, PeriodicConfig, load_experiment
from exitstorm.lab.world import FrameStats
from exitstorm.lifecycle import deferred_interrupts
from exitstorm.outputs.results import atomic_directory
from exitstorm.realkernel.preview import Frame, Preview
from exitstorm.realkernel.victims import HARNESS_PRIO, PoolSampling, VictimSpec, Victims, check_random_bytes, paused_gc
from exitstorm.realkernel.zram import PAGE_SIZE, HostError, ZramSwap, require_host
from exitstorm.runs.experiment import build_world
from exitstorm.schema import ConfigError

#: the storm scenario the simulated side runs (its device is replaced by the profile)
DEFAULT_SCENARIO = Path("configs/vm_storm_harness.toml")
#: the storm with a preview: its [[periodic]] "preview" is what the real kernel runs too
DEFAULT_PREVIEW_SCENARIO = Path("configs/vm_storm_preview.toml")
STORM_COUNTS = (1, 2, 4, 8, 16)
#: ANDROID_PRIORITY_HIGHEST: the nice lmkd gives a victim before it kills it
BOOSTED_NICE = -20
#: after the victims' pageout, before the kills: let its aftermath (kswapd, ZRAM writes) settle
SETTLE_S = 0.1
#: the real preview's first release comes this long after it is started (its process must be up)
PREVIEW_LEAD_NS = 20 * NS_PER_MS

PreviewKind = Literal["fifo", "fair"]


@frozen
class Cell:
    """``count`` equal victims SIGKILLed together, and what runs beside their exits."""

    count: int
    mrelease: bool
    #: the victims' memory all resident, none swapped: the control
    resident: bool = False
    #: the reaper thread's nice; None: the storm scenario's storm.reaper_thread as it is
    reaper_nice: int | None = None
    #: the victims at BOOSTED_NICE before the kills (by the reaper, if there is one: lmkd-like), else at nice 0
    boosted: bool = False
    #: a preview while they die: the preview scenario's (SCHED_FIFO), or it as a fair nice-0 thread
    preview: PreviewKind | None = None

    @property
    def victim_nice(self) -> int:
        return BOOSTED_NICE if self.boosted else 0

    @property
    def name(self) -> str:
        words = [f"N={self.count}"] + ["resident"] * self.resident
        if self.mrelease:
            words.append("mrelease")
            if self.boosted:  # a reaper that boosts its victims is lmkd-like
                words.append("lmkd")
            elif self.reaper_nice is not None:
                words.append(f"nice{self.reaper_nice}")
        if self.preview is not None:
            words.append(f"preview {self.preview}")
        if self.boosted and not self.mrelease:
            words.append("boosted")
        return " ".join(words)


def cells(count: int) -> list[Cell]:
    """The storm curve, then at ``count`` victims the resident control, the two reapers and the four previews."""
    return ([Cell(n, False) for n in STORM_COUNTS]
            + [Cell(count, False, resident=True), Cell(count, True, reaper_nice=0), Cell(count, True, boosted=True)]
            + [Cell(count, False, boosted=boosted, preview=kind) for kind in ("fifo", "fair")
               for boosted in (False, True)])


def victim_spec(cell: Cell, mb: int, random_bytes: int) -> VictimSpec:
    """The real victims of ``cell``: ``mb`` swapped, or ``mb`` resident for the resident control."""
    return VictimSpec(0, mb, random_bytes) if cell.resident else VictimSpec(mb, 0, random_bytes)


@frozen
class PreviewSpec:
    """A cell's preview, as the real kernel runs it."""

    period_ns: int
    budget_ns: int
    #: the SCHED_FIFO priority; None: a fair (SCHED_OTHER) thread at ``nice``
    prio: int | None
    nice: int
    frames: int
    #: the storm's SIGKILLs, after the preview's first release
    kill_after_ns: int


def _preview(exp: Experiment) -> tuple[int, PeriodicConfig]:
    """The index and spec of the scenario's ``[[periodic]]`` named "preview"."""
    found = [(i, p) for i, p in enumerate(exp.config.periodic) if p.name == "preview"]
    if not found:
        raise ConfigError(f'{exp.source}: periodic: expected a [[periodic]] named "preview" (the real kernel runs '
                          f"it too)")
    return found[0]


def preview_overrides(exp: Experiment, kind: PreviewKind) -> list[str]:
    """``--set`` overrides giving the preview scenario ``exp`` the preview of ``kind``: "fifo" is its SCHED_FIFO
    preview as it is, "fair" the same preview as a fair thread at nice 0."""
    i, spec = _preview(exp)
    if spec.thread.policy != "fifo":
        raise ConfigError(f'{exp.source}: periodic: expected the [[periodic]] named "preview" with policy "fifo" '
                          f"(the fair preview cells make it fair), got {spec.thread.policy!r}")
    if kind == "fifo":
        return []
    return [f'periodic[{i}].thread={{policy = "fair", nice = 0, cpuset = {json.dumps(spec.thread.cpuset)}, '
            f"thread_class = {json.dumps(spec.thread.thread_class)}}}"]


def preview_spec(exp: Experiment) -> PreviewSpec:
    """The ``[[periodic]]`` named "preview" of a preview cell's scenario, as the real process runs it."""
    sc = exp.config
    _, spec = _preview(exp)
    if sc.storm is None or sc.storm.kill_at_ms < spec.start_ms:
        raise ConfigError(f"{exp.source}: storm.kill_at_ms: expected a storm killed at or after the preview's "
                          f"start_ms ({spec.start_ms})")
    period_ns = round(spec.period_us * NS_PER_US)
    run_ns = round((sc.scenario.duration_s * NS_PER_S) - spec.start_ms * NS_PER_MS)
    return PreviewSpec(period_ns, round(spec.budget_us * NS_PER_US),
                       spec.thread.prio if spec.thread.policy == "fifo" else None, spec.thread.nice,
                       -(-run_ns // period_ns),  # the frames released before the run ends
                       round((sc.storm.kill_at_ms - spec.start_ms) * NS_PER_MS))


#: figure key → (label, unit)
FIGURES: dict[str, tuple[str, str]] = {
    "exit_min_ms": ("kill→reap min", "ms"),
    "exit_median_ms": ("kill→reap median", "ms"),
    "exit_max_ms": ("kill→reap max", "ms"),
    "returned_ms": ("kill→90% returned", "ms"),
    "preview_lateness_p99_ms": ("preview late p99", "ms"),
    "preview_lateness_max_ms": ("preview late max", "ms"),
    "preview_misses": ("preview misses", "frames"),
    "preview_response_p99_ms": ("preview resp. p99", "ms"),
}


def frame_figures(stats: FrameStats) -> dict[str, float | None]:
    """The preview's figures, from the same recorder the simulator's runs use."""
    lateness = stats.lateness.percentiles_ms()
    return {
        "preview_lateness_p99_ms": lateness.get("p99"),
        "preview_lateness_max_ms": lateness.get("max"),
        "preview_misses": stats.janky,
        "preview_response_p99_ms": stats.response.percentiles_ms().get("p99"),
    }


def cell_figures(cell: Cell, exit_ns: list[int], returned_ns: int | None,
                 frames: FrameStats | None) -> dict[str, float | None]:
    """A storm's figures: the victims' kill → reap spread, the ZRAM memory back (if it had any) and the preview's."""
    figures: dict[str, float | None] = {
        "exit_min_ms": min(exit_ns) / NS_PER_MS,
        "exit_median_ms": statistics.median(exit_ns) / NS_PER_MS,
        "exit_max_ms": max(exit_ns) / NS_PER_MS,
    }
    if not cell.resident:
        figures["returned_ms"] = None if returned_ns is None else returned_ns / NS_PER_MS
    if frames is not None:
        figures.update(frame_figures(frames))
    return figures


def real_frame_stats(frames: list[Frame], period_ns: int) -> FrameStats:
    stats = FrameStats("preview", period_ns, NS_PER_S, lambda *_a, **_k: None)
    start = frames[0][1] if frames else 0
    for k, release, done in frames:
        stats.on_frame(k, release - start, done - start)
    return stats


#: the target: a simulated median within this share of the real median (or inside the real range)
TOLERANCE = 0.15


def agrees(value: float, median: float, span: list[float]) -> bool:
    """``value`` within TOLERANCE of ``median`` or inside ``span`` (0 agrees only with 0)."""
    if median == 0:
        return value == 0 or span[0] <= value <= span[1]
    return abs(value - median) <= TOLERANCE * abs(median) or span[0] <= value <= span[1]


def model_agreement(rows: list[dict[str, Any]]) -> tuple[int, int]:
    """(figures whose simulated median agrees with the real one, figures)."""
    hits = total = 0
    for row in rows:
        for key, real in row["real"].items():
            if real is None:
                continue
            total += 1
            sim = row["simulated"].get(key)
            hits += sim is not None and agrees(sim, real, row["real_range"][key])
    return hits, total


def machine_agreement(runs_by_cell: list[list[dict[str, float | None]]]) -> tuple[int, int]:
    """The same test of the real machine against itself: each storm's figure against the median and range of
    the other storms of its cell (leave one out). What a model that matched the machine could hope for."""
    hits = total = 0
    for runs in runs_by_cell:
        for i, run in enumerate(runs):
            others = runs[:i] + runs[i + 1:]
            if not others:
                continue
            medians, spans = median_figures(others), figure_ranges(others)
            for key, value in run.items():
                if value is None or medians.get(key) is None:
                    continue
                total += 1
                hits += agrees(value, medians[key], spans[key])
    return hits, total


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
    """``--set`` overrides turning a storm scenario into ``cell``'s storm on ``profile`` (fair victims and reaper,
    as the real ones)."""
    swapped, resident = (0, swapped_mb) if cell.resident else (swapped_mb, 0)
    reaper = [] if cell.reaper_nice is None else ['storm.reaper_thread.policy="fair"',
                                                  f"storm.reaper_thread.nice={cell.reaper_nice}"]
    return [
        f"device={json.dumps(str(profile.resolve()))}",
        f"storm.count={cell.count}",
        f"storm.swapped_mb={swapped}",
        f"storm.resident_mb={resident}",
        "storm.file_mb=0",
        f"storm.compression_ratio={ratio!r}",
        f"storm.reapers={1 if cell.mrelease else 0}",
        'policies.reap="process_mrelease"',
        "scenario.events=[]",
        'storm.thread.policy="fair"',
        f"storm.thread.nice={cell.victim_nice}",
    ] + reaper


def cell_experiment(scenario: Path, profile: Path, cell: Cell, swapped_mb: int, ratio: float,
                    seed: int | None = None) -> Experiment:
    """The storm ``scenario`` (a preview scenario for a preview cell) made into ``cell`` on ``profile``."""
    overrides = sim_overrides(profile, cell, swapped_mb, ratio)
    if cell.preview is not None:
        overrides += preview_overrides(load_experiment(scenario), cell.preview)
    return load_experiment(scenario, overrides, seed)


def reaper_nice(scenario: Path) -> int:
    """The nice value of the storm scenario's ``reaper_thread``: the real harness's reaper thread runs at it too."""
    exp = load_experiment(scenario, ["storm.reapers=1", 'policies.reap="process_mrelease"'])
    thread = exp.config.storm.reaper_thread
    if thread.policy != "fair":
        raise ConfigError(f"{exp.source}: storm.reaper_thread.policy: expected \"fair\" (the real reaper thread "
                          f"runs at its nice value), got {thread.policy!r}")
    return thread.nice


def simulate(scenario: Path, profile: Path, cell: Cell, swapped_mb: int, ratio: float, seed: int | None = None
             ) -> dict[str, float | None]:
    """The cell in the simulator (the storm ``scenario`` made into it, at ``seed`` or the scenario's own): its
    figures."""
    exp = cell_experiment(scenario, profile, cell, swapped_mb, ratio, seed)
    world = build_world(exp, None)
    with deferred_interrupts(world.runtime.stop):
        trio.run(world.runtime.run)
    unfinished = [p.name for p in world.processes if p.exited_at is None]
    if unfinished:
        raise ConfigError(f"{exp.source}: scenario.duration_s: expected long enough for every exit to finish "
                          f"({len(unfinished)} victims still exiting at the end)")
    poller = world.pool_poller
    returned = None
    if poller is not None and poller.returned_at is not None:
        returned = poller.returned_at - world.processes[0].killed_at
    return cell_figures(cell, [p.exited_at - p.killed_at for p in world.processes], returned,
                        world.frames["preview"] if cell.preview is not None else None)


def counterbalanced(cells: list[Cell], repeat: int, repeats: int) -> list[Cell]:
    """Repeat ``repeat``'s order of the cells: rotated by a share of the list each repeat, so that no cell
    always follows the same one (the machine's state after a storm carries over) or always comes early."""
    shift = repeat * len(cells) // repeats
    return cells[shift:] + cells[:shift]


def sim_seeds(repeats: int) -> range:
    """The seeds a cell is simulated at: as many as the real side's repeats, so that both medians are over
    the same number of storms (a seed moves where the victims slept and the tick's phase)."""
    return range(1, repeats + 1)


def harness_sampling(exp: Experiment) -> PoolSampling:
    """The real harness's pool sampling, from the storm scenario's ``[storm.pool_poller]`` (what the simulated
    side runs); its threads must be at the harness's own SCHED_FIFO priority, or the two sides differ."""
    storm = exp.config.storm
    if storm is None or storm.pool_poller is None:
        raise ConfigError(f"{exp.source}: storm.pool_poller: expected a table (the real harness's ZRAM pool "
                          f"sampler takes CPU from the storm, so the simulated side runs it too)")
    poller = storm.pool_poller
    for key, thread in (("storm.pool_poller.thread", poller.thread),
                        ("storm.sender.thread", None if storm.sender is None else storm.sender.thread)):
        if thread is not None and (thread.policy, thread.prio) != ("fifo", HARNESS_PRIO):
            raise ConfigError(f"{exp.source}: {key}: expected policy \"fifo\", prio = {HARNESS_PRIO} (the real "
                              f"harness's threads), got {thread.policy!r}, prio = {thread.prio}")
    return PoolSampling(poller.interval_us * NS_PER_US / NS_PER_S, poller.returned_share)


def measure(victims: Victims, cell: Cell, spec: VictimSpec, preview: PreviewSpec | None, reaper_nice: int,
            sampling: PoolSampling) -> tuple[dict[str, float | None], dict[str, Any]]:
    """The cell on the real kernel, once (a reaper without a nice of its own at ``reaper_nice``, the pool sampled
    as ``sampling`` says): its figures and the raw timings (the storm's, and the preview's scheduling and
    frames)."""
    storm = victims.spawn_storm(spec, cell.count)
    time.sleep(SETTLE_S)
    reaper = (reaper_nice if cell.reaper_nice is None else cell.reaper_nice) if cell.mrelease else None
    run = None
    if preview is None:
        timing = victims.kill_storm(storm, reaper, cell.victim_nice, sampling)
    else:
        start = time.monotonic_ns() + PREVIEW_LEAD_NS
        with paused_gc(), Preview(preview.period_ns, preview.budget_ns, preview.frames, start, preview.prio,
                                  preview.nice) as running:
            time.sleep(max(0, start + preview.kill_after_ns - time.monotonic_ns()) / NS_PER_S)
            timing = victims.kill_storm(storm, reaper, cell.victim_nice, sampling)
            run = running.run(timeout_s=preview.frames * preview.period_ns / NS_PER_S + 30)
    if any(nice != cell.victim_nice for nice in timing.victim_nice):
        raise HostError(f"{cell.name}: the victims were at nice {timing.victim_nice} when killed, expected "
                        f"{cell.victim_nice}")
    figures = cell_figures(cell, timing.exit_ns, timing.returned_ns,
                           None if run is None else real_frame_stats(run.frames, preview.period_ns))
    return figures, asdict(timing) | ({} if run is None else {"preview": asdict(run)})


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
    todo = cells(load_experiment(preview_scenario).config.storm.count)

    def scenario_of(cell: Cell) -> Path:
        return preview_scenario if cell.preview is not None else scenario

    previews: dict[PreviewKind, PreviewSpec] = {}
    samplings: dict[Cell, PoolSampling] = {}
    for cell in todo:  # the profile and scenarios are valid before anything is measured
        exp = cell_experiment(scenario_of(cell), profile, cell, swapped_mb, PAGE_SIZE / random_bytes)
        samplings[cell] = harness_sampling(exp)
        if cell.preview is not None:
            previews[cell.preview] = preview_spec(exp)
    nice = reaper_nice(scenario)
    steps = len(todo) * repeats + len(todo)
    done = 0
    real: dict[Cell, list[dict[str, float | None]]] = {cell: [] for cell in todo}
    raw: dict[Cell, list[dict[str, Any]]] = {cell: [] for cell in todo}
    with atomic_directory(out, force) as tmp:
        with ZramSwap(), Victims() as victims:
            for r in range(repeats):
                for cell in counterbalanced(todo, r, repeats):
                    if on_step is not None:
                        on_step(done, steps, f"real: {cell.name}")
                    preview = None if cell.preview is None else previews[cell.preview]
                    figures, timing = measure(victims, cell, victim_spec(cell, swapped_mb, random_bytes), preview,
                                              nice, samplings[cell])
                    real[cell].append(figures)
                    raw[cell].append(timing)
                    done += 1
        ratio = statistics.median(t["compression_ratio"] for cell in todo if not cell.resident for t in raw[cell])
        rows = []
        for cell in todo:
            if on_step is not None:
                on_step(done, steps, f"simulated: {cell.name}")
            measured = median_figures(real[cell])
            runs = [simulate(scenario_of(cell), profile, cell, swapped_mb, ratio, seed) for seed in sim_seeds(repeats)]
            simulated = median_figures(runs)
            rows.append({
                "cell": asdict(cell) | {"name": cell.name, "victim_nice": cell.victim_nice},
                "real": measured,
                "real_range": figure_ranges(real[cell]),
                "simulated": simulated,
                "simulated_range": figure_ranges(runs),
                "relative_error": {k: relative_error(simulated.get(k), v) for k, v in measured.items()},
                "real_runs": raw[cell],
                "simulated_runs": runs,
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
            "preview": {kind: {"period_ms": p.period_ns / NS_PER_MS, "budget_ms": p.budget_ns / NS_PER_MS,
                               "prio": p.prio, "nice": p.nice, "frames": p.frames,
                               "kill_after_ms": p.kill_after_ns / NS_PER_MS} for kind, p in previews.items()},
            "figures": {k: {"label": label, "unit": unit} for k, (label, unit) in FIGURES.items()},
            "cells": rows,
        }
        report["agreement"] = {"tolerance": TOLERANCE, "model": list(model_agreement(rows)),
                               "machine": list(machine_agreement([real[cell] for cell in todo]))}
        (tmp / "validation.json").write_text(json.dumps(report, indent=2) + "\n")
        plot(report, tmp / "validation.png")
    return report


def _value(value: float | None, unit: str) -> str:
    if value is None:
        return "—"
    return f"{value:.0f}" if unit == "frames" or value >= 100 else f"{value:.1f}"


def validation_table(report: dict[str, Any]) -> Table:
    """Real vs simulated per cell and figure (medians and ranges), with the relative error of the medians."""
    t = Table(title=f"{report['profile']}: N victims of {report['swapped_mb']} MB (swapped; resident in the resident "
                    f"cell) killed together; real = median (range) of {report['repeats']} storms, sim = median "
                    f"(range) of as many seeds; error = (sim - real) / real")
    for column, justify in (("cell", "left"), ("figure", "left"), ("real", "right"), ("range", "right"),
                            ("sim", "right"), ("sim range", "right"), ("error", "right")):
        t.add_column(column, justify=justify, no_wrap=True)

    def spread(span: list[float] | None, unit: str) -> str:
        return "—" if span is None else f"{_value(span[0], unit)}–{_value(span[1], unit)}"

    for row in report["cells"]:
        first = True
        for key, real in row["real"].items():
            label, unit = report["figures"][key]["label"], report["figures"][key]["unit"]
            err = row["relative_error"][key]
            t.add_row(row["cell"]["name"] if first else "", f"{label} ({unit})", _value(real, unit),
                      spread(row["real_range"][key], unit), _value(row["simulated"].get(key), unit),
                      spread(row["simulated_range"].get(key), unit), "—" if err is None else f"{err:+.0%}",
                      end_section=key == list(row["real"])[-1])
            first = False
    return t


def _nan(value: float | None) -> float:
    return float("nan") if value is None else value


def _spread(rows: list[dict[str, Any]], key: str, side: str) -> list[list[float]]:
    """Error bars from each row's median (``side`` "real" or "simulated") down to its lowest and up to its
    highest repeat or seed (0 where missing)."""
    below, above = [], []
    for r in rows:
        span, median = r[f"{side}_range"].get(key), r[side].get(key)
        below.append(0.0 if span is None or median is None else median - span[0])
        above.append(0.0 if span is None or median is None else span[1] - median)
    return [below, above]


def _bars(ax: Any, rows: list[dict[str, Any]], keys: tuple[str, ...], report: dict[str, Any]) -> None:
    """Grouped bars per cell: for each figure, real and simulated (hatched), the repeats' and seeds' ranges as
    error bars."""
    colors = ("tab:blue", "tab:orange", "tab:green", "tab:red")
    width = 0.8 / (2 * len(keys))
    for j, (key, color) in enumerate(zip(keys, colors)):
        label = report["figures"][key]["label"]
        at = [i - 0.4 + (2 * j + 0.5) * width for i in range(len(rows))]
        ax.bar(at, [_nan(r["real"].get(key)) for r in rows], width, yerr=_spread(rows, key, "real"), capsize=2,
               color=color, label=f"{label}, real")
        ax.bar([x + width for x in at], [_nan(r["simulated"].get(key)) for r in rows], width,
               yerr=_spread(rows, key, "simulated"), capsize=2, color="white", edgecolor=color, hatch="//",
               label=f"{label}, simulated")
    ax.set_xticks(range(len(rows)), [r["cell"]["name"] for r in rows], rotation=30, ha="right", fontsize=7)
    ax.grid(True, axis="y", alpha=0.3)
    ax.margins(y=0.3)  # room above the bars for the legend
    ax.legend(fontsize=6, loc="upper left", ncol=len(keys))


def plot(report: dict[str, Any], path: Path) -> None:
    """Real against simulated for every cell: the storm curve against N, the other cells and the preview's jank
    as grouped bars (real: the median, its error bars the repeats' range)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = report["cells"]
    curve = [r for r in rows if not any(r["cell"][k] for k in ("mrelease", "resident", "boosted", "preview"))]
    others = [r for r in rows if r not in curve]
    # beside the other cells, the plain storm of their size
    reference = [r for r in curve if r["cell"]["count"] == others[0]["cell"]["count"]]
    previews = [r for r in rows if r["cell"]["preview"]]
    fig, axes = plt.subplots(2, 2, figsize=(12, 8), constrained_layout=True)
    ax = axes[0][0]
    counts = [r["cell"]["count"] for r in curve]
    for key, color in zip(("exit_min_ms", "exit_median_ms", "exit_max_ms", "returned_ms"),
                          ("tab:purple", "tab:blue", "tab:orange", "tab:green")):
        label = report["figures"][key]["label"]
        ax.errorbar(counts, [_nan(r["real"].get(key)) for r in curve], yerr=_spread(curve, key, "real"), fmt="o-",
                    color=color, capsize=3, label=f"{label}, real")
        ax.errorbar(counts, [_nan(r["simulated"].get(key)) for r in curve], yerr=_spread(curve, key, "simulated"),
                    fmt="s--", color=color, capsize=3, label=f"{label}, simulated")
    ax.set_title("storms without a reaper, all swapped")
    ax.set_xlabel("victims killed together")
    ax.set_ylabel("ms")
    ax.set_xscale("log", base=2)
    ax.set_xticks(counts, [str(c) for c in counts])
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=6)
    _bars(axes[0][1], reference + others, ("exit_median_ms", "exit_max_ms", "returned_ms"), report)
    axes[0][1].set_title("kill → reap and memory back, per cell")
    axes[0][1].set_ylabel("ms")
    _bars(axes[1][0], previews, ("preview_lateness_p99_ms", "preview_lateness_max_ms"), report)
    axes[1][0].set_title("preview lateness")
    axes[1][0].set_ylabel("ms")
    _bars(axes[1][1], previews, ("preview_misses",), report)
    axes[1][1].set_title("preview missed deadlines")
    axes[1][1].set_ylabel("frames")
    fig.suptitle(f"{report['profile']}: {report['swapped_mb']} MB per victim, real median (range) of "
                 f"{report['repeats']} vs simulated", fontsize=9)
    fig.savefig(path, dpi=120)
    plt.close(fig)
