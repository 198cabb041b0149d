"""The headline figures of a run, and their mean and 95% confidence interval over seeds.

These are the columns of ``exitstorm compare`` and of a sweep's CSV: each is
read from a run's ``summary.json``, so a run on disk gives the same figures
as the run that just finished.
"""

from __future__ import annotations

from typing import Any, Callable

from exitstorm.outputs.stats import mean_ci, proportion_ci


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
    "slow_exits": ("slow exits", "/run", _get(("slow_exits", "count")), False),
    "slow_exit_mean_ms": ("slow exit mean", "ms", _get(("slow_exits", "mean_ms")), False),
    "exit_work_peak_share": ("peak exit CPU", "share", _get(("cpu_share", "exit_work_peak", "share")), False),
    "load_peak_share": ("peak CPU load", "share", _get(("cpu_share", "load_peak", "share")), False),
    "free_mb_at_preview_start": ("free at preview", "MB", _get(("free_mb_at_preview_start",)), False),
    "free_mb_preview_init_mean": ("free in preview init", "MB", _get(("free_mb_preview_init", "mean")), False),
    "free_mb_preview_init_min": ("min free in init", "MB", _get(("free_mb_preview_init", "min")), False),
    "direct_reclaim_ms": ("direct reclaim", "ms", _get(("direct_reclaim_ms", "total")), False),
    "camera_direct_reclaim_ms": ("camera reclaim", "ms", _get(("camera_direct_reclaim_ms",)), False),
    "kills": ("kills", "/run", _get(("kills",)), False),
}


def headline(summary: dict[str, Any]) -> dict[str, Any]:
    """A run's headline figures (None where the run has no such figure)."""
    return {key: read(summary) for key, (_label, _unit, read, _p) in METRICS.items()}


def metrics_meta() -> dict[str, dict[str, str]]:
    """Label and unit of each figure, as written into compare.json and sweep.json."""
    return {key: {"label": label, "unit": unit} for key, (label, unit, _r, _p) in METRICS.items()}


def aggregate(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per figure: mean and 95% CI over the runs that have a value (Wilson's interval for proportions)."""
    out: dict[str, Any] = {}
    for key, (_label, _unit, _read, proportion) in METRICS.items():
        values = [r[key] for r in runs if r.get(key) is not None]
        out[key] = proportion_ci(sum(bool(v) for v in values), len(values)) if proportion else mean_ci(
            [float(v) for v in values])
    return out


def paired(runs: dict[int, dict[str, Any]], baseline: dict[int, dict[str, Any]]) -> dict[str, Any]:
    """Per figure: mean and 95% CI (Student's t) of the per-seed differences ``runs`` − ``baseline``, over the
    seeds where both have a value. Pairing by seed removes what a seed does to both (its apps, its storm), so
    the interval is tighter than two independent ones; a proportion's difference is a per-seed −1, 0 or 1."""
    out: dict[str, Any] = {}
    for key, (_label, _unit, _read, proportion) in METRICS.items():
        diffs = []
        for seed, figures in runs.items():
            a, b = figures.get(key), baseline.get(seed, {}).get(key)
            if a is not None and b is not None:
                diffs.append(float(bool(a)) - float(bool(b)) if proportion else float(a) - float(b))
        out[key] = mean_ci(diffs)
    return out


def cell(stat: dict[str, Any], unit: str, signed: bool = False) -> str:
    if stat["mean"] is None:
        return "—"
    share = unit == "P" or unit == "share"
    fmt = ".2f" if share else ".1f" if abs(stat["mean"]) < 100 else ".0f"
    sign = "+" if signed else ""
    if stat["ci95"] is None:
        return f"{stat['mean']:{sign}{fmt}}"
    lo, hi = stat["ci95"]
    if share:
        return f"{stat['mean']:{sign}{fmt}} [{lo:{sign}{fmt}}, {hi:{sign}{fmt}}]"
    return f"{stat['mean']:{sign}{fmt}} ± {(hi - lo) / 2:{fmt}}"
