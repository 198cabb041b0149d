"""``exitstorm compare``: the same workloads (same seeds) under each variant, summarised.

A variant is a name and a set of dotted-key overrides (from the config's
``[variants.NAME]`` tables or ``--variant NAME:key=value,...``). Every
variant runs seeds ``scenario.seed`` .. ``scenario.seed + N - 1``; each run
writes its own results directory under ``runs/VARIANT/seedS``; the figures
of every run are aggregated into means with 95% confidence intervals in
``compare.json`` and a table on the terminal.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import gc
import json
import os
from pathlib import Path
from typing import Any, Callable

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from exitstorm.config import Experiment, load_experiment, parse_value
from exitstorm.experiment import run_experiment
from exitstorm.results import atomic_directory
from exitstorm.schema import ConfigError
from exitstorm.stats import mean_ci, proportion_ci

Variant = tuple[str, dict[str, Any]]


def _get(path: tuple[str, ...]) -> Callable[[dict[str, Any]], Any]:
    def get(summary: dict[str, Any]) -> Any:
        node: Any = summary
        for key in path:
            if not isinstance(node, dict) or key not in node:
                return None
            node = node[key]
        return node
    return get


#: headline figures: key → (label, unit, how to read it from a run's summary, is it a proportion)
METRICS: dict[str, tuple[str, str, Callable[[dict[str, Any]], Any], bool]] = {
    "exit_latency_p50_ms": ("exit p50", "ms", _get(("metrics", "exit_latency_ms", "p50")), False),
    "exit_latency_p99_ms": ("exit p99", "ms", _get(("metrics", "exit_latency_ms", "p99")), False),
    "kill_to_freed_p50_ms": ("kill→freed p50", "ms", _get(("metrics", "exit_freed_latency_ms", "p50")), False),
    "janky_frames": ("janky frames", "/run", _get(("janky_frames",)), False),
    "stutter": ("stutter", "P", _get(("stutter",)), True),
    "exit_work_peak_share": ("peak exit CPU", "share", _get(("cpu_share", "exit_work_peak", "share")), False),
    "free_mb_at_preview_start": ("free at preview", "MB", _get(("free_mb_at_preview_start",)), False),
    "direct_reclaim_ms": ("direct reclaim", "ms", _get(("direct_reclaim_ms", "total")), False),
    "kills": ("kills", "/run", _get(("kills",)), False),
}


def split_top_level(text: str, sep: str = ",") -> list[str]:
    """Split on ``sep`` outside brackets and quotes (values may be TOML lists or strings)."""
    parts, depth, quote, cur = [], 0, "", []
    for ch in text:
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        elif ch == sep and depth == 0:
            parts.append("".join(cur))
            cur = []
            continue
        cur.append(ch)
    parts.append("".join(cur))
    return [p for p in (p.strip() for p in parts) if p]


def parse_variant(text: str) -> Variant:
    """``NAME:key=value,key=value`` (values are TOML, as for --set); ``NAME:`` changes nothing."""
    name, sep, rest = text.partition(":")
    name = name.strip()
    if not sep or not name or "/" in name or name.startswith("."):
        raise ConfigError(f"--variant {text}: expected NAME:key=value,key=value")
    changes: dict[str, Any] = {}
    for item in split_top_level(rest):
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise ConfigError(f"--variant {text}: expected key=value, got {item!r}")
        changes[key.strip()] = parse_value(value)
    return name, changes


#: experiments already read in this process, per (config, --set overrides, variant name)
_LOADED: dict[tuple[str, tuple[str, ...], str], Experiment] = {}


def _load(config: str, sets: list[str], variant: Variant) -> Experiment:
    key = (config, tuple(sets), variant[0])
    exp = _LOADED.get(key)
    if exp is None:
        exp = _LOADED[key] = load_experiment(config, sets, variant=variant)
    return exp


def _run_one(config: str, sets: list[str], variant: Variant, seed: int, out: Path) -> dict[str, Any]:
    exp = _load(config, sets, variant)
    summary = run_experiment(exp.with_seed(seed), out)
    gc.collect()  # a run's world is a web of cycles (actors <-> runtime): free it before the next run
    return {key: read(summary) for key, (_label, _unit, read, _p) in METRICS.items()}


def aggregate(runs: dict[int, dict[str, Any]]) -> dict[str, Any]:
    """Per metric: mean and 95% CI over the seeds that have a value."""
    out: dict[str, Any] = {}
    for key, (_label, _unit, _read, proportion) in METRICS.items():
        values = [r[key] for r in runs.values() if r.get(key) is not None]
        out[key] = proportion_ci(sum(bool(v) for v in values), len(values)) if proportion else mean_ci(
            [float(v) for v in values])
    return out


def compare(config: str, variants: list[Variant] | None, seeds: int, out: Path, *, sets: list[str] = (),
            workers: int | None = None, force: bool = False, console: Console | None = None) -> dict[str, Any]:
    """Run every variant on the same seeds and write ``out`` (compare.json, runs/) atomically."""
    console = console or Console(highlight=False)
    base = load_experiment(config, sets)
    if variants is None:
        variants = list(base.config.variants.items()) or [("baseline", {})]
    names = [name for name, _ in variants]
    if len(set(names)) != len(names):
        raise ConfigError(f"{config}: variants: expected unique names, got {names}")
    for variant in variants:
        _load(config, list(sets), variant)  # every variant is valid before anything runs (workers fork with them)
    first = base.config.scenario.seed
    seed_list = list(range(first, first + seeds))
    jobs = [(variant, seed) for variant in variants for seed in seed_list]
    workers = max(1, min(workers or os.cpu_count() or 1, len(jobs)))
    results: dict[str, dict[int, dict[str, Any]]] = {name: {} for name in names}
    with atomic_directory(out, force) as tmp:
        progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                            console=console, transient=True, disable=not console.is_terminal)
        with progress:
            task = progress.add_task(f"{len(variants)} variants x {seeds} seeds", total=len(jobs))
            def args(variant: Variant, seed: int) -> tuple[Any, ...]:
                return config, list(sets), variant, seed, tmp / "runs" / variant[0] / f"seed{seed}"

            with contextlib.ExitStack() as stack:
                if workers == 1:
                    done = (((v[0], seed), _run_one(*args(v, seed))) for v, seed in jobs)
                else:
                    # gc.freeze: what a worker inherits (modules, loaded configs) is never garbage, so the
                    # collection after each run walks only that run's objects
                    pool = stack.enter_context(concurrent.futures.ProcessPoolExecutor(max_workers=workers,
                                                                                      initializer=gc.freeze))
                    futures = {pool.submit(_run_one, *args(v, seed)): (v[0], seed) for v, seed in jobs}
                    done = ((futures[f], f.result()) for f in concurrent.futures.as_completed(futures))
                for (name, seed), figures in done:
                    results[name][seed] = figures
                    progress.advance(task)
        report = {
            "config": config,
            "sets": list(sets),
            "seeds": seed_list,
            "metrics": {key: {"label": label, "unit": unit} for key, (label, unit, _r, _p) in METRICS.items()},
            "variants": {
                name: {
                    "overrides": changes,
                    "metrics": aggregate(results[name]),
                    "runs": {str(seed): results[name][seed] for seed in seed_list},
                }
                for name, changes in variants
            },
        }
        (tmp / "compare.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def cell(stat: dict[str, Any], unit: str) -> str:
    if stat["mean"] is None:
        return "—"
    share = unit == "P" or unit == "share"
    fmt = ".2f" if share else ".1f" if abs(stat["mean"]) < 100 else ".0f"
    if stat["ci95"] is None:
        return f"{stat['mean']:{fmt}}"
    lo, hi = stat["ci95"]
    if share:
        return f"{stat['mean']:{fmt}} [{lo:{fmt}}, {hi:{fmt}}]"
    return f"{stat['mean']:{fmt}} ± {(hi - lo) / 2:{fmt}}"


def table(report: dict[str, Any]) -> Table:
    """The comparison as a rich table: mean ± 95% CI half-width ([lo, hi] for shares)."""
    t = Table(title=f"{report['config']}: {len(report['seeds'])} seeds, mean ± 95% CI")
    t.add_column("variant", no_wrap=True)
    for key, meta in report["metrics"].items():
        t.add_column(f"{meta['label']}\n({meta['unit']})", justify="right")
    for name, v in report["variants"].items():
        t.add_row(name, *(cell(v["metrics"][key], meta["unit"]) for key, meta in report["metrics"].items()))
    return t
