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
    "exit_work_peak_share": ("peak exit CPU", "share", _get(("cpu_share", "exit_work_peak", "share")), False),
    "free_mb_at_preview_start": ("free at preview", "MB", _get(("free_mb_at_preview_start",)), False),
    "direct_reclaim_ms": ("direct reclaim", "ms", _get(("direct_reclaim_ms", "total")), False),
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
