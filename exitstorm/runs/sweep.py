"""``exitstorm sweep``: a grid of config values x seeds, on local processes or a Dask cluster.

Each ``--grid key=v1,v2,...`` is one axis (values are TOML, as for
``--set``); the points are the cartesian product, in the order given, named
``p000``, ``p001``, ... Each point runs seeds ``scenario.seed`` ..
``scenario.seed + N - 1`` into ``runs/POINT/seedS`` (each run directory
written atomically).

The sweep works in ``OUT.partial`` and renames it to ``OUT`` once every run
is done and ``sweep.json``, ``sweep.csv`` (one row per run) and
``sweep_points.csv`` (mean and 95% CI per point) are written. An
interrupted sweep leaves ``OUT.partial`` with every finished run;
``--resume`` runs only what is missing there (the plan must be the same).
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import math
import shutil
from pathlib import Path
from typing import Any, Iterator

from exitstorm.lab.config import load_experiment, parse_value
from exitstorm.outputs.figures import METRICS, aggregate, headline, metrics_meta
from exitstorm.outputs.results import check_target, clear_leftovers, publish, run_dir, writer_lock
from exitstorm.runs.compare import split_top_level
from exitstorm.runs.executor import OnRun, RunJob, Variant, check_run_count, plan_seeds, run_dask, run_local
from exitstorm.schema import ConfigError

Grid = list[tuple[str, list[Any]]]


def parse_grid(texts: list[str]) -> Grid:
    """``key=v1,v2,...`` per axis; keys unique, at least one value each."""
    grid: Grid = []
    for text in texts:
        key, eq, rest = text.partition("=")
        key = key.strip()
        items = split_top_level(rest)
        if not eq or not key or not items or not all(items):
            raise ConfigError(f"--grid {text}: expected key=value1,value2,... (no empty value)")
        values = [parse_value(v) for v in items]
        if any(key == k for k, _ in grid):
            raise ConfigError(f"--grid {text}: {key} is already an axis")
        grid.append((key, values))
    return grid


def grid_points(grid: Grid) -> list[Variant]:
    """The cartesian product of the axes as named variants (first axis slowest)."""
    combos = list(itertools.product(*(values for _key, values in grid)))
    width = max(3, len(str(len(combos) - 1)))
    return [(f"p{i:0{width}d}", {key: value for (key, _v), value in zip(grid, combo)}) for i, combo in enumerate(combos)]


def _cell(value: Any) -> Any:
    """A grid value as one CSV/JSON cell: scalars as they are, lists and tables as JSON text."""
    return value if isinstance(value, (str, int, float, bool)) else json.dumps(value)


def _csv(header: list[str], rows: list[list[Any]]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(["" if v is None else v for v in row] for row in rows)
    return buf.getvalue()


def _partial_dir(out: Path) -> Path:
    return out.with_name(f"{out.name}.partial")


def _prepare(out: Path, plan: dict[str, Any], resume: bool, force: bool) -> Path:
    """The working directory: resumed (same plan), or new; a stale one needs --resume or --force."""
    check_target(out, force)
    work = _partial_dir(out)
    if work.exists():
        plan_file = work / "plan.json"
        if resume:
            old = json.loads(plan_file.read_text()) if plan_file.is_file() else None
            if old != plan:
                raise ConfigError(f"{work}: --resume: that sweep had another plan (config, --set, --grid or "
                                  f"--seeds differ); use --force to start over")
            for stale in work.glob("runs/*/.*.tmp"):  # a run cut short by a hard kill
                shutil.rmtree(stale, ignore_errors=True)
            return work
        if not force:
            raise ConfigError(f"{work}: an interrupted sweep is there; --resume to finish it, --force to start over")
        shutil.rmtree(work)
    work.mkdir(parents=True)
    (work / "plan.json").write_text(json.dumps(plan, indent=2) + "\n")
    return work


def kept_runs(out: Path) -> int:
    """How many finished runs an interrupted sweep of ``out`` has kept."""
    return len(list(_partial_dir(out).glob("runs/*/seed*/summary.json")))


def _finished(job: RunJob) -> dict[str, Any] | None:
    """A run already on disk (its directory appears only when complete): its headline figures."""
    summary = job.out / "summary.json"
    return headline(json.loads(summary.read_text())) if summary.is_file() else None


def sweep(config: str, grid: Grid, seeds: int, out: Path, *, sets: list[str] = (), workers: int | None = None,
          dask: str | None = None, resume: bool = False, force: bool = False,
          on_run: OnRun | None = None) -> dict[str, Any]:
    """Run every point of ``grid`` on ``seeds`` seeds; write ``out`` (sweep.json, sweep.csv, runs/)."""
    check_run_count(math.prod(len(values) for _key, values in grid), seeds, "--grid points x --seeds")
    points = grid_points(grid)
    seed_list = plan_seeds(config, tuple(sets), points, load_experiment(config, list(sets)).config.scenario.seed,
                           seeds)
    plan = {"config": config, "sets": list(sets), "grid": [[k, v] for k, v in grid], "seeds": seed_list}
    with writer_lock(out):
        clear_leftovers(out, force)
        work = _prepare(out, plan, resume, force)
        jobs = [RunJob(config, tuple(sets), point, seed, run_dir(work, point[0], seed))
                for point in points for seed in seed_list]
        results: dict[tuple[str, int], dict[str, Any]] = {}
        for job in jobs:
            figures = _finished(job)
            if figures is not None:
                results[job.variant[0], job.seed] = figures
        kept = len(results)
        todo = [job for job in jobs if (job.variant[0], job.seed) not in results]
        if on_run is not None:
            on_run(kept, len(jobs), kept)
        runs: Iterator[tuple[RunJob, dict[str, Any]]]
        if dask is not None:
            runs = run_dask(todo, dask)
        else:
            runs = run_local(todo, workers)
        for job, figures in runs:
            results[job.variant[0], job.seed] = figures
            if on_run is not None:
                on_run(len(results), len(jobs), kept)
        report = summarise(config, list(sets), grid, points, seed_list, results)
        _write_report(work, report, grid)
        (work / "plan.json").unlink()
        publish(work, out, force)
    return report


def _write_report(work: Path, report: dict[str, Any], grid: Grid) -> None:
    """sweep.json, sweep.csv (a row per run) and sweep_points.csv (a row per point) into ``work``."""
    rows = report["runs"]
    (work / "sweep.json").write_text(json.dumps(report, indent=2) + "\n")
    (work / "sweep.csv").write_text(_csv(list(rows[0]), [list(r.values()) for r in rows]))
    point_rows = []
    for p in report["points"]:
        cells: list[Any] = [p["point"], *(_cell(p["overrides"][k]) for k, _ in grid), p["n"]]
        for key in METRICS:
            stat = p["metrics"][key]
            cells += [stat["mean"], *(stat["ci95"] or (None, None))]
        point_rows.append(cells)
    header = ["point", *(k for k, _ in grid), "n", *(f"{key}_{part}" for key in METRICS
                                                       for part in ("mean", "ci95_low", "ci95_high"))]
    (work / "sweep_points.csv").write_text(_csv(header, point_rows))


def summarise(config: str, sets: list[str], grid: Grid, points: list[Variant], seeds: list[int],
              results: dict[tuple[str, int], dict[str, Any]]) -> dict[str, Any]:
    """sweep.json: the plan, each point's mean and CI per figure, and one flat row per run (pandas-ready)."""
    return {
        "config": config,
        "sets": sets,
        "grid": {key: values for key, values in grid},
        "seeds": seeds,
        "metrics": metrics_meta(),
        "points": [
            {"point": name, "overrides": overrides, "n": len(seeds),
             "metrics": aggregate([results[name, seed] for seed in seeds])}
            for name, overrides in points
        ],
        "runs": [
            {"point": name, **{k: _cell(v) for k, v in overrides.items()}, "seed": seed, **results[name, seed]}
            for name, overrides in points for seed in seeds
        ],
    }
