"""End to end through the ``exitstorm`` command: outputs, determinism, bad input."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from hdrh.histogram import HdrHistogram
from hdrh.log import HistogramLogReader

from exitstorm.outputs.results import writer_lock

from tests.conftest import ROOT, dir_bytes, exitstorm

CONFIG = ROOT / "configs" / "cpu_contention.toml"
SHORT = ["--set", "scenario.duration_s=0.3"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("runs")
    out = {}
    for label, seed in (("A", "1"), ("B", "1"), ("C", "2")):
        out[label] = base / label
        proc = exitstorm("run", str(CONFIG), "--seed", seed, "--out", str(out[label]), *SHORT)
        assert proc.returncode == 0, proc.stderr
    return out


def test_same_seed_gives_identical_bytes_in_separate_processes(runs: dict[str, Path]) -> None:
    files = dir_bytes(runs["A"])
    assert {"events.jsonl", "summary.json", "trace.json", "profile.folded"} <= set(files)
    assert files == dir_bytes(runs["B"])
    assert (runs["A"] / "events.jsonl").read_bytes() != (runs["C"] / "events.jsonl").read_bytes()


def test_summary_reports_frames_cpu_share_and_conserves_cpu_time(runs: dict[str, Path]) -> None:
    summary = json.loads((runs["A"] / "summary.json").read_text())
    assert summary["seed"] == 1 and summary["device"] == "phone_1p3p4"
    assert summary["frames"] is None and summary["kills"] == 0  # no camera, no lmkd here
    preview = summary["periodic"]["preview"]
    assert set(preview["lateness_ms"]) == {"p50", "p90", "p99", "max", "count"}
    assert preview["frames"] == preview["lateness_ms"]["count"] >= 17
    assert 0 <= preview["janky"] <= preview["frames"]
    assert summary["cpu_share"]["storm"] == {"window_ms": None, "share": None}
    share = summary["cpu_share"]["whole_run"]
    assert {"preview", "system", "foreground", "background", "idle"} <= set(share)
    assert abs(sum(share.values()) - 1.0) < 1e-4
    cpu = summary["cpu_time_ns"]
    assert cpu["run"] + cpu["spin"] + cpu["idle"] == cpu["cores_x_elapsed"] == 8 * 300_000_000
    assert summary["config_echo"]["scenario"]["duration_s"] == 0.3


def test_event_log_is_json_lines_with_time_actor_event(runs: dict[str, Path]) -> None:
    lines = (runs["A"] / "events.jsonl").read_text().splitlines()
    assert lines
    times = []
    for line in lines:
        rec = json.loads(line)
        assert list(rec)[:3] == ["t_ns", "actor", "event"]
        times.append(rec["t_ns"])
    assert times == sorted(times)


def test_histograms_are_standard_hdr_interval_logs_and_percentile_files(runs: dict[str, Path]) -> None:
    hist = runs["A"] / "histograms"
    names = {p.name for p in hist.iterdir()}
    for cls in ("preview", "system", "foreground", "background"):
        assert f"sched_delay.{cls}.hlog" in names and f"sched_delay.{cls}.hgrm" in names
    reader = HistogramLogReader(str(hist / "sched_delay.background.hlog"), HdrHistogram(1000, 3_600_000_000_000, 3))
    total = 0
    while (h := reader.get_next_interval_histogram()) is not None:
        total += h.get_total_count()
    summary = json.loads((runs["A"] / "summary.json").read_text())
    assert total == summary["sched_delay_ms"]["background"]["count"] > 0
    hgrm = (hist / "frame_response.preview.hgrm").read_text()
    assert "Percentile" in hgrm and "#[Mean" in hgrm


def test_existing_results_are_not_overwritten_without_force(runs: dict[str, Path]) -> None:
    before = (runs["A"] / "summary.json").read_bytes()
    proc = exitstorm("run", str(CONFIG), "--out", str(runs["A"]), *SHORT)
    assert proc.returncode == 2
    assert "already exists" in proc.stderr and "--force" in proc.stderr
    assert (runs["A"] / "summary.json").read_bytes() == before


def test_force_replaces_exitstorms_results_atomically(tmp_path: Path) -> None:
    out = tmp_path / "r"
    assert exitstorm("run", str(CONFIG), "--out", str(out), *SHORT).returncode == 0
    (out / "stale.txt").write_text("old")
    proc = exitstorm("run", str(CONFIG), "--out", str(out), "--force", *SHORT)
    assert proc.returncode == 0, proc.stderr
    assert not (out / "stale.txt").exists() and (out / "summary.json").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["r"]


@pytest.mark.parametrize("kind", ["directory", "file", "symlink"])
def test_force_will_not_delete_what_exitstorm_did_not_write(tmp_path: Path, kind: str) -> None:
    out = tmp_path / "precious"
    if kind == "directory":
        out.mkdir()
        (out / "thesis.tex").write_text("years of work")
    elif kind == "file":
        out.write_text("years of work")
    else:
        (tmp_path / "elsewhere").mkdir()
        out.symlink_to(tmp_path / "elsewhere")
    before = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))
    for command in (["run", str(CONFIG)], ["compare", str(CONFIG), "--seeds", "1"],
                    ["sweep", str(CONFIG), "--grid", "scenario.duration_s=0.3", "--seeds", "1"]):
        proc = exitstorm(*command, "--out", str(out), "--force", *SHORT)
        assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
        assert "--force" in proc.stderr and str(out) in proc.stderr, proc.stderr
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")) == before


def test_a_second_writer_of_the_same_results_is_refused_naming_the_first(tmp_path: Path) -> None:
    out = tmp_path / "r"
    with writer_lock(out):  # this test process is the first writer
        for command in (["run", str(CONFIG)], ["compare", str(CONFIG), "--seeds", "1"],
                        ["sweep", str(CONFIG), "--grid", "scenario.duration_s=0.3", "--seeds", "1"]):
            proc = exitstorm(*command, "--out", str(out), *SHORT)
            assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
            assert f"another exitstorm (pid {os.getpid()}) is writing it" in proc.stderr, proc.stderr
        assert not out.exists()
    assert list(tmp_path.iterdir()) == []  # the lock's file goes with the lock
    assert exitstorm("run", str(CONFIG), "--out", str(out), *SHORT).returncode == 0


def _bad_config(tmp_path: Path, text: str) -> Path:
    configs = tmp_path / "configs"
    (configs / "devices").mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "configs" / "devices" / "phone_1p3p4.toml", configs / "devices")
    shutil.copytree(ROOT / "configs" / "kernels", configs / "kernels", dirs_exist_ok=True)
    path = configs / "bad.toml"
    path.write_text(text)
    return path


BASE = CONFIG.read_text()


@pytest.mark.parametrize(
    ("text", "args", "expected"),
    [
        ("device = \n", [], "invalid TOML"),
        (BASE.replace("seed = 1", "seed = 1\nspeed = 3"), [], "scenario.speed: unknown key"),
        (BASE.replace("duration_s = 2", "duration_s = -5"), [], "scenario.duration_s: expected a number in [0.001, 3600], got -5"),
        (BASE.replace("duration_s = 2", 'duration_s = "long"'), [], "scenario.duration_s: expected a number, got 'long'"),
        (BASE.replace("count = 6", "count = 6.5"), [], "load[0].count: expected an integer, got 6.5"),
        (BASE.replace('policy = "fifo", prio = 2', 'policy = "rr", prio = 2'), [],
         "periodic[1].thread.policy: expected one of 'fifo', 'fair', got 'rr'"),
        (BASE.replace('policy = "fifo", prio = 2', 'policy = "fifo", prio = 0'), [],
         "periodic[1].thread.prio: expected an integer in 1..99 for policy 'fifo', got 0"),
        (BASE.replace("nice = 10", "nice = 25"), [], "load[2].thread.nice: expected an integer in -20..19, got 25"),
        (BASE.replace('cpuset = "background"', 'cpuset = "little"'), [],
         "load[2].thread.cpuset: expected a cpuset of device 'phone_1p3p4'"),
        (BASE.replace('device = "phone_1p3p4"', 'device = "pixel99"'), [],
         "device: expected a device profile name (phone_1p3p4) or a path to one, got 'pixel99'"),
        (BASE, ["--set", "kernel_overrides.sched.base_slice_ns=0"],
         "slot_cache.toml (with the scenario's kernel_overrides): sched.base_slice_ns: expected a number in [50000, 1e+09], got 0"),
        (BASE, ["--set", "sched.base_slice_ns=1"], "sched: unknown key"),
        (BASE, ["--set", "kernel_overrides.locks.ptl.kind=\"ticket\""], "locks.ptl.kind: expected one of 'spin'"),
        (BASE, ["--set", "storm={count=1, swapped_mb=-4, resident_mb=0, file_mb=0, compression_ratio=3.0, "
                "kill_at_ms=1, thread={policy=\"fair\", cpuset=\"foreground\", thread_class=\"x\"}}"],
         "storm.swapped_mb: expected a number >= 0, got -4"),
        (BASE, ["--set", "storm={count=50, swapped_mb=900, resident_mb=900, file_mb=0, compression_ratio=3.0, "
                "kill_at_ms=1, thread={policy=\"fair\", cpuset=\"foreground\", thread_class=\"x\"}}"],
         "impossible combination: victim"),
        (BASE, ["--set", "scenario.events=[\"actor\", \"gossip\"]"], "scenario.events[1]: expected one of"),
        (BASE, ["--set", "scenario"], "--set scenario: expected dotted.key=value"),
        (BASE.replace('kernel = "slot_cache"', 'kernel = "linux99"'), [],
         "kernel: expected a kernel profile name (slot_cache, swap_table, zsmalloc_2026) or a path to one"),
        (BASE.replace('kernel = "slot_cache"', ''), [], "kernel: required key is missing"),
        (BASE, ["--seed", "-3"], "--seed: expected an integer >= 0"),
    ],
)
def test_bad_input_is_one_clear_line_and_status_2(tmp_path: Path, text: str, args: list[str], expected: str) -> None:
    path = _bad_config(tmp_path, text)
    out = tmp_path / "out"
    proc = exitstorm("run", str(path), "--out", str(out), *args)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert expected in lines[0]
    assert str(path.parent) in lines[0] or expected.startswith("--")
    assert "Traceback" not in proc.stderr
    assert not out.exists()
    assert list(tmp_path.glob(".out.*")) == []


def test_bad_device_profile_names_the_device_file(tmp_path: Path) -> None:
    path = _bad_config(tmp_path, BASE)
    device = tmp_path / "configs" / "devices" / "phone_1p3p4.toml"
    device.write_text(device.read_text().replace("restricted = [0, 1, 2, 3]", "restricted = [0, 9]"))
    proc = exitstorm("run", str(path), "--out", str(tmp_path / "out"))
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        f"exitstorm: {device}: cpusets.restricted: expected CPU numbers in 0..7, got [0, 9]"
    )


def test_usage_errors_exit_2() -> None:
    proc = exitstorm("run")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    proc = exitstorm("frobnicate")
    assert proc.returncode == 2
