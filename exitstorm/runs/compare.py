"""``exitstorm compare``: the same workloads (same seeds) under each variant, summarised.

A variant is a name and a set of dotted-key overrides (from the config's
``[variants.NAME]`` tables or ``--variant NAME:key=value,...``). Every
variant runs seeds ``scenario.seed`` .. ``scenario.seed + N - 1``; each run
writes its own results directory under ``runs/VARIANT/seedS``; the figures
of every run are aggregated into means with 95% confidence intervals in
``compare.json`` and a table on the terminal, and each variant's per-seed
differences from the baseline into a second (paired) one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.table import Table

from exitstorm.lab.config import load_experiment, parse_value
from exitstorm.outputs.figures import aggregate, cell, metrics_meta, paired
from exitstorm.outputs.results import SAFE_NAME_RULE, atomic_directory, run_dir, safe_name
from exitstorm.runs.executor import OnRun, RunJob, Variant, check_run_count, plan_seeds, run_local
from exitstorm.schema import ConfigError


def split_top_level(text: str, sep: str = ",") -> list[str]:
    """Split on ``sep`` outside brackets and quotes (values may be TOML lists or strings); an empty text has
    no items, and an empty item between two separators stays (an empty string) for the caller to refuse."""
    if not text.strip():
        return []
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
    return [p.strip() for p in parts]


def parse_variant(text: str) -> Variant:
    """``NAME:key=value,key=value`` (values are TOML, as for --set); ``NAME:`` changes nothing."""
    name, sep, rest = text.partition(":")
    name = name.strip()
    if not sep:
        raise ConfigError(f"--variant {text}: expected NAME:key=value,key=value")
    if not safe_name(name):
        raise ConfigError(f"--variant {text}: expected a NAME that is {SAFE_NAME_RULE}")
    changes: dict[str, Any] = {}
    for item in split_top_level(rest):
        if not item:
            raise ConfigError(f"--variant {text}: expected key=value between every two commas")
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise ConfigError(f"--variant {text}: expected key=value, got {item!r}")
        changes[key.strip()] = parse_value(value)
    return name, changes


def compare(config: str, variants: list[Variant] | None, seeds: int, out: Path, *, sets: list[str] = (),
            workers: int | None = None, force: bool = False, on_run: OnRun | None = None) -> dict[str, Any]:
    """Run every variant on the same seeds and write ``out`` (compare.json, runs/) atomically."""
    base = load_experiment(config, sets)
    if variants is None:
        variants = list(base.config.variants.items()) or [("baseline", {})]
    check_run_count(len(variants), seeds, "variants x --seeds")
    names = [name for name, _ in variants]
    if len(set(names)) != len(names):
        raise ConfigError(f"{config}: variants: expected unique names, got {names}")
    seed_list = plan_seeds(config, tuple(sets), variants, base.config.scenario.seed, seeds)
    results: dict[str, dict[int, dict[str, Any]]] = {name: {} for name in names}
    with atomic_directory(out, force) as tmp:
        jobs = [RunJob(config, tuple(sets), variant, seed, run_dir(tmp, variant[0], seed))
                for variant in variants for seed in seed_list]
        for done, (job, figures) in enumerate(run_local(jobs, workers), 1):
            results[job.variant[0]][job.seed] = figures
            if on_run is not None:
                on_run(done, len(jobs), 0)
        reference = baseline_name(names)
        report = {
            "config": config,
            "sets": list(sets),
            "seeds": seed_list,
            "metrics": metrics_meta(),
            "baseline": reference,
            "variants": {
                name: {
                    "overrides": changes,
                    "metrics": aggregate([results[name][seed] for seed in seed_list]),
                    "vs_baseline": None if name == reference else paired(results[name], results[reference]),
                    "runs": {str(seed): results[name][seed] for seed in seed_list},
                }
                for name, changes in variants
            },
        }
        (tmp / "compare.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def baseline_name(names: list[str]) -> str:
    """The variant the others are differenced against: the one named ``baseline``, else the first."""
    return "baseline" if "baseline" in names else names[0]


def _figure_table(title: str, rows: str, metrics: dict[str, dict[str, str]], stats: dict[str, dict[str, Any]],
                  signed: bool = False) -> Table:
    """One row per name of ``stats`` (figure key → its statistic), one column per figure."""
    t = Table(title=title)
    t.add_column(rows, no_wrap=True)
    for meta in metrics.values():
        t.add_column(f"{meta['label']}\n({meta['unit']})", justify="right")
    for name, row in stats.items():
        t.add_row(name, *(cell(row[key], meta["unit"], signed) for key, meta in metrics.items()))
    return t


def paired_table(report: dict[str, Any]) -> Table | None:
    """Each variant minus the baseline, paired by seed: mean ± 95% CI of the per-seed differences."""
    others = {name: v["vs_baseline"] for name, v in report["variants"].items() if v.get("vs_baseline")}
    if not others:
        return None
    return _figure_table(f"minus {report['baseline']}, paired by seed: mean ± 95% CI of the differences",
                         "variant", report["metrics"], others, signed=True)


def table(report: dict[str, Any], rows: str = "variant") -> Table:
    """The comparison as a rich table: mean ± 95% CI half-width ([lo, hi] for shares)."""
    return _figure_table(f"{report['config']}: {len(report['seeds'])} seeds, mean ± 95% CI", rows,
                         report["metrics"], {name: v["metrics"] for name, v in report["variants"].items()})
