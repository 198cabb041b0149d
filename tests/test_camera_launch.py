"""End to end through the CLI: configs/camera_launch.toml, the scenario exitstorm exists for."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from policies.reap import REAP
from tests.conftest import ROOT, exitstorm

CONFIG = ROOT / "configs" / "camera_launch.toml"


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("camera") / "seed1"
    proc = exitstorm("run", str(CONFIG), "--seed", "1", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "kills: " in proc.stdout and "camera: preview from" in proc.stdout
    return out


def test_lmkd_kills_in_adj_order_and_every_kill_is_accounted(run: Path) -> None:
    s = json.loads((run / "summary.json").read_text())
    log = s["kill_log"]
    assert s["kills"] == len(log) >= 10  # the seed's 10+ kills
    adjs = [k["adj"] for k in log]
    assert adjs == sorted(adjs, reverse=True) and min(adjs) >= 701  # cached apps first
    for prev, nxt in zip(log, log[1:]):  # the next decision waits for the death or the 100 ms timeout
        waited = nxt["t_decision_ms"] - prev["t_decision_ms"]
        assert waited >= 100 or (prev["t_exit_ms"] is not None and prev["t_exit_ms"] <= nxt["t_decision_ms"])
    for k in log:
        assert k["swapped_mb"] > 0 and k["via"] in {"lmkd", "lmkd_reaper0", "lmkd_reaper1"}
        assert k["t_decision_ms"] <= k["t_kill_ms"]
        if k["t_exit_ms"] is not None:  # synchronous release: memory is back before the exit ends
            assert k["t_kill_ms"] <= k["t_freed_ms"] <= k["t_exit_ms"]
    finished = sum(k["t_exit_ms"] is not None for k in log)
    assert s["metrics"]["exit_latency_ms"]["count"] == finished == s["kills"] - s["exiting_at_end"]


def test_camera_metrics_and_storm_window_shares(run: Path) -> None:
    s = json.loads((run / "summary.json").read_text())
    assert s["frames"] == s["metrics"]["frame_lateness_ms"]["count"] > 100
    assert 0 <= s["janky_frames"] <= s["frames"] and isinstance(s["stutter"], bool)
    assert s["preview_start_ms"] > 1000  # after the 1 s allocation window from 200 ms
    assert 0 < s["free_mb_at_preview_start"] < 100
    storm = s["cpu_share"]["storm"]
    t0, t1 = storm["window_ms"]
    assert t0 == s["kill_log"][0]["t_kill_ms"] and t1 > t0
    assert abs(sum(storm["share"].values()) - 1.0) < 1e-4
    assert {"exiting", "reaper", "lmkd", "camera", "system_load", "kswapd", "app"} <= set(storm["share"])
    dr = s["direct_reclaim_ms"]
    assert dr["total"] > 0 and dr["by_class"]["camera"] == pytest.approx(dr["total"])
    fm = s["free_memory_mb"]
    assert len(fm["t_ms"]) == len(fm["mb"]) == 6000 // 10 + 1 and fm["t_ms"][1] == 10
    assert min(fm["mb"]) >= s["memory"]["watermarks_mb"]["min"] - 1
    # free memory over the preview's 200 ms initialization: the samples of the timeline inside it
    init = s["free_mb_preview_init"]
    lo, hi = init["window_ms"]
    assert hi - lo == pytest.approx(200) and lo < s["preview_start_ms"] < hi
    inside = [mb for t, mb in zip(fm["t_ms"], fm["mb"]) if lo <= t <= hi]
    assert init["min"] == min(inside) and init["mean"] == pytest.approx(sum(inside) / len(inside), abs=1e-3)
    assert s["camera_direct_reclaim_ms"] == pytest.approx(dr["by_class"]["camera"])
    slow = [e["kill_to_exit_ms"] for e in s["exits"] if (e["kill_to_exit_ms"] or 0) > 500]
    unfinished = [e for e in s["exits"] if e["kill_to_exit_ms"] is None and 6000 - e["killed_ms"] > 500]
    assert s["slow_exits"]["count"] == len(slow) + len(unfinished)
    assert s["slow_exits"]["mean_ms"] == pytest.approx(sum(slow) / len(slow), abs=1e-3)
    # the total load: every core's non-idle time, weighted by capacity, is at most the whole device
    assert 0.5 < s["cpu_share"]["load_whole_run"] <= s["cpu_share"]["load_peak"]["share"] <= 1.0


def test_histograms_and_same_seed_same_bytes(run: Path, tmp_path: Path) -> None:
    names = {p.name for p in (run / "histograms").iterdir()}
    for name in ("frame_lateness.preview", "exit_latency", "exit_freed_latency", "direct_reclaim"):
        assert {f"{name}.hlog", f"{name}.hgrm"} <= names
    again = tmp_path / "again"
    proc = exitstorm("run", str(CONFIG), "--seed", "1", "--out", str(again))
    assert proc.returncode == 0, proc.stderr
    for path in sorted(run.rglob("*")):
        if path.is_file():
            assert path.read_bytes() == (again / path.relative_to(run)).read_bytes(), path.name


@pytest.mark.parametrize("override, expected", [
    ("lmkd.victim_cpuset=nope", "lmkd.victim_cpuset: expected a cpuset of device 'phone_1p3p4'"),
    ("policies.reap=magic",  # every registered remedy, in the order the registry found them
     f"policies.reap: expected one of {', '.join(repr(name) for name in REAP.names())}, got 'magic'"),
    ("apps.bands[0].adj_max=100", "apps.bands[0].adj_max: expected an adj >= adj_min (900), got 100"),
    ("lmkd.props.psi_partial_stall_ms=2000", "lmkd.props.psi_partial_stall_ms: expected a stall threshold <="),
    ("apps.count=100", "impossible combination: cached"),
])
def test_bad_camera_config_is_one_line_and_status_2(override: str, expected: str, tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = exitstorm("run", str(CONFIG), "--set", override, "--out", str(out))
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and expected in proc.stderr, proc.stderr
    assert not out.exists() and not list(tmp_path.iterdir())


def test_a_policy_without_its_parameters_is_named(tmp_path: Path) -> None:
    proc = exitstorm("run", str(ROOT / "configs" / "single_exit.toml"), "--set", "policies.reap=oom_reaper",
                     "--out", str(tmp_path / "out"))
    assert proc.returncode == 2
    assert ("policies.oom_reaper: expected a [policies.oom_reaper] table of parameters "
            "(policies.reap = 'oom_reaper' needs it)") in proc.stderr
