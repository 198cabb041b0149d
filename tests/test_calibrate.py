"""``exitstorm calibrate``: the fit on synthetic measurements, and the harness on this machine's kernel."""

from __future__ import annotations

import statistics

import json
import os
from pathlib import Path

import pytest

from exitstorm.lab.config import load_device, load_experiment
from exitstorm.realkernel import calibrate as cal
from exitstorm.realkernel.victims import ExitTiming, StormTiming
from exitstorm.realkernel.zram import HostError, require_host
from tests.conftest import HOST_PROBLEM, ROOT, exitstorm, zram_state

VM_STORM = ROOT / "configs" / "vm_storm.toml"


def plane(fixed: float, swapped: float, resident: float, points: list[tuple[int, int]]) -> list[tuple[int, int, float]]:
    return [(s, r, fixed + swapped * s + resident * r) for s, r in points]


def test_fit_recovers_known_costs_exactly() -> None:
    points = plane(0.7, 0.0993, 0.0414, [(50, 0), (100, 0), (200, 0), (0, 50), (0, 200), (0, 800)])
    fit = cal.fit_exit_costs(points)
    assert (fit.fixed_ms, fit.ms_per_mb_swapped, fit.ms_per_mb_resident) == pytest.approx((0.7, 0.0993, 0.0414),
                                                                                            rel=1e-12)
    assert fit.max_relative_error == pytest.approx(0, abs=1e-12)
    # per 4 KiB page, in ns: 0.0993 ms/MB / 256 = 387.9 ns; 0.0414 / 256 = 161.7 ns
    assert cal.costs_from_fit(fit) == {"swap_entry_free_ns": 388, "present_page_free_ns": 162,
                                       "exit_fixed_ns": 700000}


def test_fit_is_least_squares_with_one_intercept() -> None:
    # swapped: 10, 20 ms at 100, 200 MB; resident: 6, 10 ms at 100, 200 MB -> no common intercept fits all four
    fit = cal.fit_exit_costs([(100, 0, 10.0), (200, 0, 20.0), (0, 100, 6.0), (0, 200, 10.0)])
    # f = 1, s = 0.094, r = 0.046: residuals t - fit = -0.4, +0.2, +0.4, -0.2 sum to 0 and are orthogonal to
    # the swapped (100, 200, 0, 0) and resident (0, 0, 100, 200) columns, so these solve the normal equations
    assert (fit.fixed_ms, fit.ms_per_mb_swapped, fit.ms_per_mb_resident) == pytest.approx((1.0, 0.094, 0.046))
    assert fit.max_relative_error == pytest.approx(0.4 / 6.0)


def test_a_negative_fixed_cost_is_refitted_as_zero() -> None:
    # t = 0.1 x swapped and 0.05 x resident, but 50 MB swapped came in fast: the free plane's intercept is < 0
    fit = cal.fit_exit_costs([(50, 0, 4.0), (200, 0, 20.0), (0, 50, 2.5), (0, 200, 10.0)])
    assert fit.fixed_ms == 0
    # through the origin: s = (50 x 4 + 200 x 20) / (50^2 + 200^2) = 4200 / 42500; r = 0.05 exactly
    assert (fit.ms_per_mb_swapped, fit.ms_per_mb_resident) == pytest.approx((4200 / 42500, 0.05), rel=1e-12)


def test_fit_needs_swapped_and_resident_points() -> None:
    with pytest.raises(ValueError, match="some swapped and some resident"):
        cal.fit_exit_costs([(100, 0, 10.0), (200, 0, 20.0), (400, 0, 40.0)])


def timing(swapped: int, resident: int, reap_ms: float, pageout_ms: float = 0.0) -> ExitTiming:
    return ExitTiming(swapped, resident, swapped * 1024, swapped * 256, round(pageout_ms * 1e6), round(reap_ms * 1e6),
                      round(reap_ms * 1e6))


def test_medians_per_size_and_compress_cost_per_page() -> None:
    runs = [timing(100, 0, ms, pageout_ms=p) for ms, p in ((12, 200), (10, 256), (30, 300))] + [
        timing(0, 100, 5), timing(0, 100, 7)]
    assert cal.medians(runs) == [(100, 0, 12.0), (0, 100, 6.0)]
    # 100 MB = 25 600 pages; median pageout 256 ms -> 10 000 ns per page
    assert cal.compress_page_ns(runs) == 10_000


def test_a_sysfs_cpumask_reads_as_its_cpus() -> None:
    assert cal.cpumask_cpus("3\n", 2) == [0, 1]
    assert cal.cpumask_cpus("00000000,000000f0", 8) == [4, 5, 6, 7]
    assert cal.cpumask_cpus("1,00000001", 40) == [0, 32]
    assert cal.cpumask_cpus("ff", 2) == [0, 1]


def test_profile_loads_as_a_device_and_the_model_reproduces_the_fit(tmp_path: Path) -> None:
    points = plane(0.7, 0.0993, 0.0414, [(50, 0), (200, 0), (0, 50), (0, 200)])
    fit = cal.fit_exit_costs(points)
    memory = {"total_mb": 24576, "kernel_mb": 512, "watermark_scale_factor": 10, "zram_disksize_mb": 8192}
    path = tmp_path / "fitted.toml"
    base = ROOT / "configs" / "devices" / "vm_2core.toml"
    path.write_text(cal.profile_toml("fitted", fit, {"compress_page_ns": 3000}, 2, memory, points, "a test",
                                     load_device(base), base, {"preempt": None, "hz": None}))
    exp = load_experiment(VM_STORM, [f'device="{path}"', "storm.swapped_mb=400"])
    assert exp.device.name == "fitted" and exp.device.costs.swap_entry_free_ns == 388
    # what calibration does not measure comes from the base: the tick interrupt's time; kthreads on every core
    assert exp.device.tick_interrupt == load_device(base).tick_interrupt
    assert exp.device.clusters[0].idle_states == load_device(base).clusters[0].idle_states
    assert exp.device.kswapd_cpus == exp.device.oom_reaper_cpus == [0, 1]
    out = tmp_path / "run"
    proc = exitstorm("run", str(VM_STORM), "--set", f'device="{path}"', "--set", "storm.swapped_mb=400",
                     "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    (exit_row,) = json.loads((out / "summary.json").read_text())["exits"]
    # one process alone on a core: its kill -> exit is its exit's CPU cost, what the fit predicts
    assert exit_row["kill_to_exit_ms"] == pytest.approx(0.7 + 0.0993 * 400, rel=0.02)


def test_plan_interleaves_sizes_and_kinds_and_ends_with_the_storms() -> None:
    quick = cal.plan(quick=True)
    assert len(quick) == 2 * len(cal.QUICK_SIZES_MB) * cal.QUICK_REPEATS + cal.QUICK_REPEATS
    assert [(s.swapped_mb, s.resident_mb, n) for s, n in quick[:4]] == [(50, 0, 1), (0, 50, 1), (100, 0, 1), (0, 100, 1)]
    # each round of sizes ends with the storm, so that the storms spread over the whole calibration too
    per_round = 2 * len(cal.QUICK_SIZES_MB) + 1
    assert [i for i, (s, n) in enumerate(quick) if n > 1] == [
        per_round * (r + 1) - 1 for r in range(cal.QUICK_REPEATS)]
    assert {(s.swapped_mb, s.resident_mb) for s, n in quick if n > 1} == {(cal.STORM_SWAPPED_MB, 0)}
    assert {s.random_bytes for s, _ in cal.plan(quick=True, random_bytes=512)} == {512}


def storm_timing(exit_ms: list[float]) -> StormTiming:
    return StormTiming(len(exit_ms), 200, False, 200 * 256, 3.9, [round(ms * 1e6) for ms in exit_ms], None, [])


def test_storm_median_is_the_median_over_storms_of_each_storms_median() -> None:
    # per storm 31, 39 and 30 ms: validate's figure for the same cell
    assert cal.storm_median_ms([storm_timing([30, 32]), storm_timing([50, 28]), storm_timing([31, 29])]) == 31


def test_monotone_search_lands_nearest_the_target_in_few_steps() -> None:
    calls: list[int] = []

    def response(ns: int) -> float:
        calls.append(ns)
        return 20.0 + ns / 10

    x, tried, monotone = cal.search_monotone(response, 24.04)
    assert x == 40 and monotone and len(calls) <= 12 and [t for t, _ in tried] == sorted(set(calls))
    assert cal.search_monotone(response, 24.06)[0] == 41  # 24.1 is nearer than 24.0
    assert cal.search_monotone(response, 1.0)[0] == 0
    assert cal.search_monotone(response, 1e9)[0] == cal.MAX_TRANSFER_NS
    # a response that dips is reported, not hidden
    assert cal.search_monotone(lambda ns: -abs(ns - 300), -10.0)[2] is False


def test_the_fit_recovers_a_known_transfer_cost_from_a_storm_the_model_made(tmp_path: Path) -> None:
    base = ROOT / "configs" / "devices" / "vm_2core.toml"
    points = plane(0.7, 0.0993, 0.0414, [(50, 0), (200, 0), (0, 50), (0, 200)])
    fit = cal.fit_exit_costs(points)
    memory = {"total_mb": 24576, "kernel_mb": 512, "watermark_scale_factor": 10, "zram_disksize_mb": 8192}
    build = {"preempt": "none", "hz": 250}

    def profile(ns: int) -> str:
        return cal.profile_toml("fitted", fit, {"compress_page_ns": 3000}, 2, memory, points, "a test",
                                load_device(base), base, build,
                                cal.StormFit(ns, cal.STORM_COUNT, cal.STORM_SWAPPED_MB, 0.0, 0.0, [], True))

    # the "real" storm is the model's own at a known cost; the fit must find that cost again
    known = 37
    truth = tmp_path / "truth.toml"
    truth.write_text(profile(known))
    measured = statistics.median(
        cal.simulate(cal.DEFAULT_SCENARIO, truth, cal.Cell(cal.STORM_COUNT, False), cal.STORM_SWAPPED_MB, 3.9,
                     seed)["exit_median_ms"] for seed in (1, 2, 3))
    result = cal.fit_contention(profile, measured, 3.9, storms=3)
    assert result.monotone and result.transfer_ns == known and result.model_ms == pytest.approx(measured, abs=1e-3)
    written = tmp_path / "fitted.toml"
    written.write_text(cal.profile_toml("fitted", fit, {"compress_page_ns": 3000}, 2, memory, points, "a test",
                                        load_device(base), base, build, result))
    device = load_device(written)
    assert device.costs.cacheline_transfer_ns == known and (device.build.preempt, device.build.hz) == ("none", 250)
    assert f"cacheline_transfer_ns = {known}    # fitted: 2 x 200 MB swapped killed together" in written.read_text()


def test_bad_out_and_existing_files_are_one_line_and_status_2(tmp_path: Path) -> None:
    proc = exitstorm("calibrate", "--out", str(tmp_path / "profile.json"))
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "expected a .toml file name" in proc.stderr
    (tmp_path / "vm.toml").write_text("")
    proc = exitstorm("calibrate", "--quick", "--out", str(tmp_path / "vm.toml"))
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "use --force" in proc.stderr


def test_without_root_the_command_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(HostError, match="need root"):
        require_host()


@pytest.mark.skipif(HOST_PROBLEM is not None, reason=f"no real-kernel harness here: {HOST_PROBLEM}")
def test_quick_calibration_on_this_kernel(tmp_path: Path) -> None:
    zram_before = zram_state()
    out = tmp_path / "vm.toml"
    proc = exitstorm("calibrate", "--quick", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert zram_state() == zram_before  # ZRAM put back as it was
    raw = json.loads(out.with_suffix(".measurements.json").read_text())
    assert len(raw["kills"]) + len(raw["storms"]) == len(cal.plan(quick=True))
    assert all(len(k["exit_ns"]) == cal.STORM_COUNT and not k["mrelease"] for k in raw["storms"])
    fitted = raw["contention_fit"]
    assert f"cacheline_transfer_ns = {fitted['transfer_ns']}    # fitted: 2 x 200 MB" in out.read_text()
    # the search lands near the measured storm (the model's response can jump a few ms between two
    # neighbouring costs; whether it ever fell is recorded, not assumed: this VM's storms are noisy)
    assert fitted["tried"] and fitted["model_ms"] == pytest.approx(fitted["measured_ms"], rel=0.25)
    responses = [ms for _ns, ms in sorted(fitted["tried"])]
    assert fitted["monotone"] == all(a <= b for a, b in zip(responses, responses[1:]))
    # this machine's kernel build is recorded: preemption model and HZ
    assert raw["build"]["preempt"] in ("none", "voluntary", "full") and 100 <= raw["build"]["hz"] <= 1000
    for kill in raw["kills"]:
        assert kill["kill_to_reap_ns"] > 0 and kill["kill_to_returned_ns"] is not None
        if kill["swapped_mb"]:
            assert kill["vm_swap_kb"] >= kill["swapped_mb"] * 1024 * 0.95 and kill["pool_kb"] > 0
    exp = load_experiment(VM_STORM, [f'device="{out}"'])
    costs = exp.device.costs
    assert costs.swap_entry_free_ns > 0 and costs.present_page_free_ns > 0 and costs.compress_page_ns > 0
    # bigger victims take longer to reap
    medians = medians_of(raw)
    assert medians[(200, 0)] > medians[(50, 0)] and medians[(0, 200)] > medians[(0, 50)]


def medians_of(raw: dict) -> dict[tuple[int, int], float]:
    return {(m["swapped_mb"], m["resident_mb"]): m["kill_to_reap_ms"] for m in raw["medians_ms"]}
