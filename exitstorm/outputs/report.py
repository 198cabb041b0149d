"""``exitstorm report DIR``: plots (PNG) and ``report.md`` for a run or a comparison.

For a run: percentile curves of exit latency and frame lateness (the
HdrHistogram plotter's "1/(1-p)" axis), free memory over time with the kills
and the preview's start, and CPU share by thread class over time. For a
comparison: the same curves per variant overlaid (histograms merged over the
seeds, time series averaged over them) and a bar chart of the headline
figures with their 95% confidence intervals. Everything is read from the
results directory; the report goes to ``DIR/report/``, written atomically.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Iterator

from hdrh.histogram import HdrHistogram

from actors.runtime.quantities import NS_PER_MS
from exitstorm.outputs.figures import cell
from exitstorm.outputs.histograms import merged_histograms, percentile_walk, run_histograms
from exitstorm.outputs.results import atomic_directory, comparison_runs, read_json
from exitstorm.schema import ConfigError

#: the latency distributions plotted, and their axis labels
CURVES = {
    "exit_latency": "kill → exit (ms)",
    "exit_freed_latency": "kill → memory returned (ms)",
    "frame_lateness.preview": "preview frame lateness (ms)",
}
#: percentiles marked on the 1/(1-p) axis
TICKS = (0.0, 50.0, 90.0, 99.0, 99.9, 99.99)


def _pyplot() -> Any:
    """matplotlib's pyplot on the file-only backend (imported here: the other commands do not pay for it)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


@contextlib.contextmanager
def _drawn(path: Path, figsize: tuple[float, float], rows: int = 1, cols: int = 1) -> Iterator[tuple[Any, Any]]:
    """A figure (its axes as a rows x cols array) saved to ``path`` as PNG when the block ends, then closed."""
    plt = _pyplot()
    fig, axes = plt.subplots(rows, cols, figsize=figsize, constrained_layout=True, squeeze=False)
    try:
        yield fig, axes
        fig.savefig(path, dpi=110)
    finally:
        plt.close(fig)


def curve(h: HdrHistogram) -> tuple[list[float], list[float]]:
    """``(1/(1-p), value ms)`` at the percentile ticks below 100% (the plotter's axis has no 100%)."""
    points = [(1 / (1 - level / 100), value / NS_PER_MS) for value, level, _n in percentile_walk(h) if level < 100]
    return [x for x, _ in points], [y for _, y in points]


def _percentile_axis(ax: Any, label: str) -> None:
    ax.set_xscale("log")
    ax.set_xticks([1 / (1 - p / 100) for p in TICKS], [f"{p:g}%" for p in TICKS])
    ax.minorticks_off()
    ax.set_xlabel("percentile")
    ax.set_ylabel(label)
    ax.grid(True, alpha=0.3)


def plot_percentiles(path: Path, sources: dict[str, dict[str, HdrHistogram]], title: str) -> list[str]:
    """One panel per latency in CURVES, one curve per source; returns the latencies drawn."""
    names = [n for n in CURVES if any(n in hists and hists[n].get_total_count() for hists in sources.values())]
    if not names:
        return []
    with _drawn(path, (5 * len(names), 4), cols=len(names)) as (fig, axes):
        for ax, name in zip(axes[0], names):
            for label, hists in sources.items():
                h = hists.get(name)
                if h is not None and h.get_total_count():
                    xs, ys = curve(h)
                    ax.plot(xs, ys, marker=".", markersize=3,
                            label=f"{label} (n={h.get_total_count()}, max {h.get_max_value() / NS_PER_MS:.1f})")
            _percentile_axis(ax, CURVES[name])
            ax.legend(fontsize="small")
        fig.suptitle(title)
    return names


def mean_series(series: list[tuple[list[float], list[float]]]) -> tuple[list[float], list[float]]:
    """The pointwise mean of time series sampled at the same times (cut to the shortest)."""
    n = min(len(t) for t, _ in series)
    return series[0][0][:n], [sum(v[i] for _, v in series) / len(series) for i in range(n)]


def plot_free_memory(path: Path, lines: dict[str, tuple[list[float], list[float]]], summary: dict[str, Any],
                     kills: list[float], title: str) -> None:
    """Free memory over time per source, the watermarks, kills (one run) and the preview's start."""
    with _drawn(path, (10, 4)) as (_fig, axes):
        ax = axes[0, 0]
        for label, (t_ms, mb) in lines.items():
            ax.plot(t_ms, mb, label=label, linewidth=1.2)
        marks = summary["memory"]["watermarks_mb"]
        for i, mb in enumerate(marks.values()):
            ax.axhline(mb, color="grey", linestyle=":", linewidth=0.8,
                       label=f"watermarks {', '.join(marks)}" if i == 0 else None)
        for i, t in enumerate(kills):
            ax.axvline(t, color="tab:red", alpha=0.5, linewidth=0.8, label="kill" if i == 0 else None)
        if summary.get("preview_start_ms") is not None:
            ax.axvline(summary["preview_start_ms"], color="tab:green", linestyle="--", label="preview start")
        ax.set_xlabel("virtual time (ms)")
        ax.set_ylabel("free memory (MB)")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="small", loc="upper right")
        ax.set_title(title)


def plot_cpu_share(path: Path, timeline: dict[str, Any], title: str) -> None:
    """CPU share by thread class per window, stacked (one run)."""
    with _drawn(path, (10, 4)) as (_fig, axes):
        ax = axes[0, 0]
        classes = sorted(timeline["share"], key=lambda c: -sum(timeline["share"][c]))
        # the last window is drawn to its end: repeat its values there
        t_ms = timeline["t_ms"] + [timeline["t_ms"][-1] + timeline["window_ms"]] if timeline["t_ms"] else []
        ax.stackplot(t_ms, *(timeline["share"][c] + timeline["share"][c][-1:] for c in classes), labels=classes,
                     step="post")
        ax.set_ylim(0, 1)
        ax.set_xlabel(f"virtual time (ms), windows of {timeline['window_ms']:g} ms")
        ax.set_ylabel("share of all CPUs")
        ax.legend(fontsize="x-small", loc="upper left", bbox_to_anchor=(1.0, 1.0))
        ax.set_title(title)


def plot_exit_share(path: Path, lines: dict[str, tuple[list[float], list[float]]], classes: str, title: str) -> None:
    """The CPU share of exit-related work per window, one line per variant (mean over seeds)."""
    with _drawn(path, (10, 4)) as (_fig, axes):
        ax = axes[0, 0]
        for label, (t_ms, share) in lines.items():
            ax.step(t_ms, share, where="post", label=label, linewidth=1.2)
        ax.set_xlabel("virtual time (ms)")
        ax.set_ylabel(f"CPU share of exit work\n({classes})", fontsize="small")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="small")
        ax.set_title(title)


def plot_headline(path: Path, report: dict[str, Any]) -> None:
    """A bar per variant for each headline figure, with its 95% confidence interval."""
    metrics = report["metrics"]
    cols = 3
    rows = -(-len(metrics) // cols)
    names = list(report["variants"])
    with _drawn(path, (5 * cols, 3.4 * rows), rows, cols) as (fig, axes):
        for ax, (key, meta) in zip(axes.flat, metrics.items()):
            stats = [report["variants"][v]["metrics"][key] for v in names]
            means = [s["mean"] if s["mean"] is not None else 0.0 for s in stats]
            # max(0, ...): a zero-width interval may sit a rounding error off its mean
            err = [[max(0.0, m - s["ci95"][0]) if s["ci95"] else 0.0 for m, s in zip(means, stats)],
                   [max(0.0, s["ci95"][1] - m) if s["ci95"] else 0.0 for m, s in zip(means, stats)]]
            ax.bar(range(len(names)), means, yerr=err, capsize=3, color=[f"C{i}" for i in range(len(names))])
            ax.set_xticks(range(len(names)), names, rotation=35, ha="right", fontsize="small")
            ax.set_title(f"{meta['label']} ({meta['unit']})", fontsize="medium")
            ax.grid(True, axis="y", alpha=0.3)
        for ax in list(axes.flat)[len(metrics):]:
            ax.set_visible(False)
        fig.suptitle(f"{report['config']}: {len(report['seeds'])} seeds, mean and 95% CI")


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _run_report(run_dir: Path, out: Path) -> str:
    summary = read_json(run_dir / "summary.json")
    title = f"{summary['config']} seed {summary['seed']}"
    md = [f"# exitstorm run: {title}\n\n",
          f"Device `{summary['device']}`, kernel `{summary['kernel']}`, {summary['duration_ms']:.0f} ms virtual.\n\n"]
    rows = [["kills", str(summary["kills"])], ["still exiting at the end", str(summary["exiting_at_end"])]]
    if summary["frames"] is not None:
        rows += [["preview frames / janky", f"{summary['frames']} / {summary['janky_frames']}"],
                 ["stutter", str(summary["stutter"])],
                 ["free memory at preview start (MB)", str(summary["free_mb_at_preview_start"])],
                 ["direct reclaim (ms)", f"{summary['direct_reclaim_ms']['total']:.1f}"]]
    for key, label in (("exit_latency_ms", "kill → exit"), ("exit_freed_latency_ms", "kill → memory returned"),
                       ("frame_lateness_ms", "preview frame lateness")):
        fig = summary["metrics"].get(key) or {}
        if fig.get("count"):
            rows.append([f"{label} p50 / p99 / max (ms)", f"{fig['p50']} / {fig['p99']} / {fig['max']}"])
    md.append(_md_table(["figure", "value"], rows))
    if plot_percentiles(out / "latency_percentiles.png", {title: run_histograms(run_dir)}, title):
        md.append("\n## Latency percentiles\n\n![latency percentiles](latency_percentiles.png)\n")
    free = summary["free_memory_mb"]
    plot_free_memory(out / "free_memory.png", {"free memory": (free["t_ms"], free["mb"])}, summary,
                     [k["t_kill_ms"] for k in summary["kill_log"]], title)
    md.append("\n## Free memory, kills and the preview's start\n\n![free memory](free_memory.png)\n")
    plot_cpu_share(out / "cpu_share.png", summary["cpu_share"]["timeline"], title)
    md.append("\n## CPU share by thread class\n\n![CPU share](cpu_share.png)\n")
    md.append("\nThe timeline of this run is `trace.json` (open it in https://ui.perfetto.dev); its flame graph "
              "input is `profile.folded`.\n")
    return "".join(md)


def _compare_report(cmp_dir: Path, out: Path) -> str:
    report = read_json(cmp_dir / "compare.json")
    title = f"{report['config']}: {len(report['seeds'])} seeds"
    metrics = report["metrics"]
    md = [f"# exitstorm compare: {title}\n\n",
          f"Seeds {report['seeds'][0]}..{report['seeds'][-1]}; mean ± 95% CI half-width ([low, high] for "
          "shares and probabilities) per variant.\n\n"]
    md.append(_md_table(["variant", *(f"{m['label']} ({m['unit']})" for m in metrics.values())], [
        [name, *(cell(v["metrics"][key], meta["unit"]) for key, meta in metrics.items())]
        for name, v in report["variants"].items()]))
    plot_headline(out / "headline.png", report)
    md.append("\n## Headline figures\n\n![headline figures](headline.png)\n")
    runs = comparison_runs(cmp_dir)
    sources = {name: merged_histograms(dirs, names=tuple(CURVES)) for name, dirs in runs.items()}
    if plot_percentiles(out / "latency_percentiles.png", sources, f"{title}, all seeds merged"):
        md.append("\n## Latency percentiles (all seeds merged)\n\n![latency percentiles](latency_percentiles.png)\n")
    summaries = {name: [read_json(d / "summary.json") for d in dirs] for name, dirs in runs.items()}
    free = {name: mean_series([(s["free_memory_mb"]["t_ms"], s["free_memory_mb"]["mb"]) for s in ss])
            for name, ss in summaries.items()}
    first = next(iter(summaries.values()))[0]
    plot_free_memory(out / "free_memory.png", free, first, [], f"{title}: mean over seeds")
    md.append("\n## Free memory (mean over seeds)\n\n![free memory](free_memory.png)\n")
    exit_share = {name: mean_series([exit_work(s) for s in ss]) for name, ss in summaries.items()}
    classes = ", ".join(first["cpu_share"]["exit_work_peak"]["classes"])
    plot_exit_share(out / "exit_cpu_share.png", exit_share, classes, f"{title}: mean over seeds")
    md.append("\n## CPU share of exit work (mean over seeds)\n\n![exit CPU share](exit_cpu_share.png)\n")
    md.append("\nEach run's own report: `exitstorm report DIR/runs/VARIANT/seedN`.\n")
    return "".join(md)


def exit_work(summary: dict[str, Any]) -> tuple[list[float], list[float]]:
    """The share of all CPUs taken by the exit-work classes, per CPU window of a run."""
    timeline = summary["cpu_share"]["timeline"]
    classes = [c for c in summary["cpu_share"]["exit_work_peak"]["classes"] if c in timeline["share"]]
    return timeline["t_ms"], [sum(timeline["share"][c][i] for c in classes) for i in range(len(timeline["t_ms"]))]


def write_report(results: Path, force: bool = False) -> Path:
    """Write ``results/report/`` (report.md and its PNGs) for a run or a comparison directory."""
    if (results / "compare.json").is_file():
        build = _compare_report
    elif (results / "summary.json").is_file():
        build = _run_report
    else:
        raise ConfigError(f"{results}: not a results directory of exitstorm run or compare "
                          "(no summary.json, no compare.json)")
    out = results / "report"
    with atomic_directory(out, force) as tmp:
        (tmp / "report.md").write_text(build(results, tmp))
    return out
