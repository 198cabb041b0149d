"""Reading results the way users do: ``exitstorm logs``, ``exitstorm hist`` and ``exitstorm report``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from exitstorm.lab.config import load_experiment
from exitstorm.outputs.histograms import hdr_percentiles_ms, read_hlog
from exitstorm.runs.experiment import run_experiment
from tests.conftest import ROOT, exitstorm

CONFIG = str(ROOT / "configs" / "camera_launch.toml")
RUN = ["scenario.duration_s=2.5", 'scenario.events=["actor","metric","lock"]']


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[int, Path]:
    base = tmp_path_factory.mktemp("inspect")
    out = {}
    for seed in (1, 2):
        out[seed] = base / f"seed{seed}"
        run_experiment(load_experiment(CONFIG, RUN, seed=seed), out[seed])
    return out


def _records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "events.jsonl").read_text().splitlines()]


@pytest.mark.parametrize(("args", "keep"), [
    (["--actor", "lmkd"], lambda r: r["actor"] == "lmkd"),
    (["--actor", "lmkd*", "--event", "lmkd_kill"], lambda r: r["actor"].startswith("lmkd") and r["event"] == "lmkd_kill"),
    (["--event", "frame", "--where", "janky=false"], lambda r: r["event"] == "frame" and r["janky"] is False),
    (["--event", "lock_*", "--where", "lock=zs_pool->lock", "--since", "500", "--until", "900.5"],
     lambda r: r["event"].startswith("lock_") and r["lock"] == "zs_pool->lock" and 500e6 <= r["t_ns"] <= 900.5e6),
    (["--where", "k=3"], lambda r: r.get("k") == 3),
])
def test_logs_filters_agree_with_a_direct_read(runs: dict[int, Path], args: list[str], keep) -> None:
    expected = [r for r in _records(runs[1]) if keep(r)]
    assert expected, "the filter should select something in this run"
    proc = exitstorm("logs", str(runs[1]), *args, "--json")
    assert proc.returncode == 0, proc.stderr
    assert [json.loads(line) for line in proc.stdout.splitlines()] == expected
    table = exitstorm("logs", str(runs[1]), *args)
    rows = table.stdout.splitlines()
    assert len(rows) == len(expected)
    assert all(f"{r['t_ns'] / 1e6:.6f}" in row and r["event"] in row for r, row in zip(expected, rows))


def test_logs_where_true_is_not_one(runs: dict[int, Path]) -> None:
    proc = exitstorm("logs", str(runs[1]), "--event", "frame", "--where", "janky=1", "--json")
    assert proc.returncode == 0 and proc.stdout == ""


def test_logs_of_a_missing_directory_is_one_line_and_status_2(tmp_path: Path) -> None:
    proc = exitstorm("logs", str(tmp_path / "nowhere"))
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "events.jsonl" in proc.stderr


def test_hist_percentiles_agree_with_the_summary(runs: dict[int, Path]) -> None:
    summary = json.loads((runs[1] / "summary.json").read_text())
    for name, key in (("exit_latency", "exit_latency_ms"), ("exit_freed_latency", "exit_freed_latency_ms"),
                      ("direct_reclaim", "direct_reclaim_stall_ms"), ("frame_lateness.preview", "frame_lateness_ms")):
        figures = hdr_percentiles_ms(read_hlog(runs[1] / "histograms" / f"{name}.hlog"))
        assert figures == summary["metrics"][key], name
    proc = exitstorm("hist", str(runs[1]), "exit_latency")
    assert proc.returncode == 0, proc.stderr
    exit_ms = summary["metrics"]["exit_latency_ms"]
    for row in ("p50", "p90", "p99", "max", "count"):
        line = next(line for line in proc.stdout.splitlines() if f" {row} " in line)
        assert str(exit_ms[row]) in line


def test_hist_compares_two_runs_side_by_side(runs: dict[int, Path]) -> None:
    proc = exitstorm("hist", str(runs[1]), "exit_*", "--vs", str(runs[2]))
    assert proc.returncode == 0, proc.stderr
    assert "exit_latency (ms)" in proc.stdout and "exit_freed_latency (ms)" in proc.stdout
    a = json.loads((runs[1] / "summary.json").read_text())["metrics"]["exit_latency_ms"]["p50"]
    b = json.loads((runs[2] / "summary.json").read_text())["metrics"]["exit_latency_ms"]["p50"]
    after = proc.stdout.split("exit_latency (ms)", 1)[1]
    p50 = next(line for line in after.splitlines() if " p50 " in line)
    assert str(a) in p50 and str(b) in p50 and f"{(b - a) / a:+.1%}" in p50


def test_hist_of_an_unknown_name_lists_the_known_ones(runs: dict[int, Path]) -> None:
    proc = exitstorm("hist", str(runs[1]), "exit_latncy")
    assert proc.returncode == 2 and "exit_latency" in proc.stderr and proc.stderr.count("\n") == 1


def _png_has_content(path: Path) -> bool:
    import matplotlib.image

    pixels = matplotlib.image.imread(path)
    return path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and pixels.shape[0] > 200 and float(pixels.std()) > 0.01


def test_report_of_a_run_writes_plots_and_markdown(runs: dict[int, Path]) -> None:
    proc = exitstorm("report", str(runs[1]))
    assert proc.returncode == 0, proc.stderr
    report = runs[1] / "report"
    pngs = {p.name for p in report.glob("*.png")}
    assert pngs == {"latency_percentiles.png", "free_memory.png", "cpu_share.png"}
    assert all(_png_has_content(report / name) for name in pngs)
    md = (report / "report.md").read_text()
    assert all(f"]({name})" in md for name in pngs)
    again = exitstorm("report", str(runs[1]))
    assert again.returncode == 2 and "--force" in again.stderr
    assert exitstorm("report", str(runs[1]), "--force").returncode == 0


def test_report_of_a_comparison_overlays_variants_and_charts_headlines(tmp_path: Path) -> None:
    out = tmp_path / "cmp"
    proc = exitstorm("compare", CONFIG, "--seeds", "2", "--out", str(out), "--set", "scenario.duration_s=2.5",
                     "--variant", "base:", "--variant", "fast:kernel=\"zsmalloc_2026\"")
    assert proc.returncode == 0, proc.stderr
    proc = exitstorm("report", str(out))
    assert proc.returncode == 0, proc.stderr
    report = out / "report"
    pngs = {p.name for p in report.glob("*.png")}
    assert pngs == {"headline.png", "latency_percentiles.png", "free_memory.png", "exit_cpu_share.png"}
    assert all(_png_has_content(report / name) for name in pngs)
    md = (report / "report.md").read_text()
    assert "| base |" in md and "| fast |" in md and all(f"]({name})" in md for name in pngs)
    hist = exitstorm("hist", str(out), "exit_latency")
    assert hist.returncode == 0 and "base" in hist.stdout and "fast" in hist.stdout


def test_report_of_something_else_is_one_line_and_status_2(tmp_path: Path) -> None:
    proc = exitstorm("report", str(tmp_path))
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1




def test_headline_chart_takes_a_zero_width_interval_a_rounding_error_off_its_mean(tmp_path: Path) -> None:
    from exitstorm.outputs.report import plot_headline

    stat = {"mean": 13.0, "ci95": [13.000000000000002, 13.000000000000002], "n": 20}
    report = {"config": "c.toml", "seeds": list(range(20)), "metrics": {"kills": {"label": "kills", "unit": "/run"}},
              "variants": {"a": {"metrics": {"kills": stat}}, "b": {"metrics": {"kills": {**stat, "mean": 9.0,
                                                                                           "ci95": [8.5, 9.5]}}}}}
    plot_headline(tmp_path / "h.png", report)
    assert _png_has_content(tmp_path / "h.png")
