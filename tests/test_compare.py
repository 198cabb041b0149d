"""``exitstorm compare`` end to end, and its statistics."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from exitstorm.outputs.figures import paired
from exitstorm.outputs.stats import mean_ci, proportion_ci, t_quantile
from exitstorm.runs.compare import parse_variant, split_top_level
from exitstorm.schema import ConfigError

from tests.conftest import ROOT, exitstorm

CONFIG = ROOT / "configs" / "camera_launch.toml"
SMALL = ["--seeds", "2", "--set", "scenario.duration_s=2", "--variant", "baseline:",
         "--variant", "dzf:policies.swap_release=\"deferred_zs_free\",policies.deferred_zs_free.max_active=2"]


def test_student_t_and_wilson_intervals_match_the_tables() -> None:
    assert t_quantile(0.975, 19) == pytest.approx(2.093, abs=5e-4)
    assert t_quantile(0.975, 1) == pytest.approx(12.706, abs=5e-4)
    assert t_quantile(0.975, 4) == pytest.approx(2.776, abs=5e-4)
    ci = mean_ci([1.0, 2.0, 3.0, 4.0, 5.0])["ci95"]
    assert ci == pytest.approx([3 - 2.776 * 1.5811 / 5 ** 0.5, 3 + 2.776 * 1.5811 / 5 ** 0.5], abs=1e-3)
    assert proportion_ci(12, 20)["ci95"] == pytest.approx([0.3866, 0.7812], abs=1e-4)
    assert proportion_ci(0, 20)["ci95"][0] == pytest.approx(0.0, abs=1e-12) and mean_ci([])["mean"] is None
    assert mean_ci([7.0]) == {"mean": 7.0, "ci95": None, "n": 1}  # one seed: no interval, not a zero-width one


def test_paired_differences_are_over_the_seeds_both_have() -> None:
    base = {1: {"janky_frames": 4, "stutter": False}, 2: {"janky_frames": 4, "stutter": True},
            3: {"janky_frames": 6, "stutter": False}, 4: {"janky_frames": 1, "stutter": False}}
    runs = {1: {"janky_frames": 5, "stutter": True}, 2: {"janky_frames": 7, "stutter": True},
            3: {"janky_frames": 9, "stutter": False}, 4: {"janky_frames": None, "stutter": False}}
    diff = paired(runs, base)
    # janky: seeds 1-3 only (seed 4 has no value), differences 1, 3, 3: mean 7/3, sd 1.1547, t(0.975, 2) 4.3027
    half = 4.3027 * 1.1547 / 3 ** 0.5
    assert diff["janky_frames"]["n"] == 3 and diff["janky_frames"]["mean"] == pytest.approx(7 / 3)
    assert diff["janky_frames"]["ci95"] == pytest.approx([7 / 3 - half, 7 / 3 + half], abs=1e-3)
    # stutter: per-seed differences 1, 0, 0, 0
    assert diff["stutter"]["mean"] == pytest.approx(0.25) and diff["stutter"]["n"] == 4
    assert diff["kills"] == {"mean": None, "ci95": None, "n": 0}


def test_variant_syntax() -> None:
    assert parse_variant("a:policies.reap=none,x.y=[1, 2],z='q,r'") == (
        "a", {"policies.reap": "none", "x.y": [1, 2], "z": "q,r"})
    assert parse_variant("base:") == ("base", {})
    assert split_top_level("a=1,b={c=2,d=3}") == ["a=1", "b={c=2,d=3}"]
    with pytest.raises(ConfigError, match="expected NAME:key=value"):
        parse_variant("no-colon")


@pytest.fixture(scope="module")
def compared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cmp") / "two_workers"
    proc = exitstorm("compare", str(CONFIG), *SMALL, "--workers", "2", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "4 runs in" in proc.stdout
    assert "…" not in proc.stdout  # the table is printed whole, even to a pipe 80 columns wide
    return out


def test_compare_writes_every_run_and_aggregates_the_same_seeds(compared: Path) -> None:
    report = json.loads((compared / "compare.json").read_text())
    assert report["seeds"] == [1, 2] and list(report["variants"]) == ["baseline", "dzf"]
    for name, v in report["variants"].items():
        assert (compared / "runs" / name / "seed1" / "summary.json").is_file()
        kills = [run["kills"] for run in v["runs"].values()]
        stat = v["metrics"]["kills"]
        assert stat["n"] == 2 and stat["mean"] == pytest.approx(sum(kills) / 2)
        assert stat["ci95"][0] <= stat["mean"] <= stat["ci95"][1]
        assert 0 <= v["metrics"]["stutter"]["mean"] <= 1
    assert report["variants"]["dzf"]["overrides"] == {"policies.swap_release": "deferred_zs_free",
                                                      "policies.deferred_zs_free.max_active": 2}
    # the paired differences from the baseline are those of the runs themselves
    assert report["baseline"] == "baseline" and report["variants"]["baseline"]["vs_baseline"] is None
    runs = {name: v["runs"] for name, v in report["variants"].items()}
    diffs = [runs["dzf"][s]["kills"] - runs["baseline"][s]["kills"] for s in ("1", "2")]
    assert report["variants"]["dzf"]["vs_baseline"]["kills"]["mean"] == pytest.approx(sum(diffs) / 2)


def test_compare_is_the_same_on_one_worker(compared: Path, tmp_path: Path) -> None:
    out = tmp_path / "one_worker"
    proc = exitstorm("compare", str(CONFIG), *SMALL, "--workers", "1", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert (out / "compare.json").read_bytes() == (compared / "compare.json").read_bytes()


@pytest.mark.parametrize("args, expected", [
    (["--variant", "x:policies.reap=magic"], "(variant x): policies.reap: expected one of"),
    (["--variant", "x"], "--variant x: expected NAME:key=value"),
    (["--seeds", "0"], "--seeds: expected an integer in 1..100000"),
])
def test_bad_compare_input_is_one_line_and_status_2(args: list[str], expected: str, tmp_path: Path) -> None:
    proc = exitstorm("compare", str(CONFIG), *args, "--out", str(tmp_path / "out"))
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and expected in proc.stderr, proc.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("name", ["../../../x", ".", "..", "", "a/b", "-rf", ".hidden", "x" * 101, "a b", "é"])
def test_a_variant_name_that_is_not_a_plain_file_name_is_refused_and_nothing_is_written(name: str,
                                                                                      tmp_path: Path) -> None:
    # from the config file, for compare and run alike, and from the command line
    deep = tmp_path / "a" / "b" / "c"
    deep.mkdir(parents=True)
    config = deep / "hostile.toml"
    config.write_text(f'base = "{CONFIG}"\n[variants.ok]\n[variants.{json.dumps(name)}]\n"policies.reap" = "none"\n')
    for args in (["compare", str(config), "--seeds", "1"], ["run", str(config)]):
        proc = exitstorm(*args, "--out", str(deep / "out"))
        assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
        assert "variants: expected variant names that are a plain file name" in proc.stderr, proc.stderr
    proc = exitstorm("compare", str(CONFIG), f"--variant={name}:", "--seeds", "1", "--out", str(deep / "out"))
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "a plain file name" in proc.stderr, proc.stderr
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")) == [
        "a", "a/b", "a/b/c", "a/b/c/hostile.toml"]


def test_window_and_slow_exit_arithmetic() -> None:
    from exitstorm.lab.world import slow_exits, window_stats

    samples = [(0, 10), (10, 4), (20, 7), (30, 1)]
    assert window_stats(samples, 5, 25) == (5.5, 4) and window_stats(samples, 31, 40) is None
    # exits of 600 and 300 ms, one still exiting after 800 ms, one killed 100 ms before the end
    spans = [(0, 600), (100, 400), (200, None), (900, None)]
    assert slow_exits(spans, 1000, 500) == (2, 600.0)
    assert slow_exits([(0, 100)], 1000, 500) == (0, None)
