"""``exitstorm calibrate``: the fit on synthetic measurements, and the harness on this machine's kernel."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from exitstorm import calibrate as cal
from exitstorm.config import load_device, load_experiment
from exitstorm.victims import ExitTiming, StormTiming
from exitstorm.zram import HostError, active_swaps, require_host
from tests.conftest import HOST_PROBLEM, ROOT, exitstorm

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


def test_profile_loads_as_a_device_and_the_model_reproduces_the_fit(tmp_path: Path) -> None:
    points = plane(0.7, 0.0993, 0.0414, [(50, 0), (200, 0), (0, 50), (0, 200)])
    fit = cal.fit_exit_costs(points)
    memory = {"total_mb": 24576, "kernel_mb": 512, "watermark_scale_factor": 10, "zram_disksize_mb": 8192}
    path = tmp_path / "fitted.toml"
    base = ROOT / "configs" / "devices" / "vm_2core.toml"
    path.write_text(cal.profile_toml("fitted", fit, {"compress_page_ns": 3000}, 2, memory, points, "a test",
                                     load_device(base), base))
    exp = load_experiment(VM_STORM, [f'device="{path}"', "storm.swapped_mb=400"])
    assert exp.device.name == "fitted" and exp.device.costs.swap_entry_free_ns == 388
    out = tmp_path / "run"
    proc = exitstorm("run", str(VM_STORM), "--set", f'device="{path}"', "--set", "storm.swapped_mb=400",
                     "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    (exit_row,) = json.loads((out / "summary.json").read_text())["exits"]
    # one process alone on a core: its kill -> exit is its exit's CPU cost, what the fit predicts
    assert exit_row["kill_to_exit_ms"] == pytest.approx(0.7 + 0.0993 * 400, rel=0.02)


def test_plan_interleaves_sizes_and_kinds() -> None:
    quick = cal.plan(quick=True)
    assert len(quick) == (2 + cal.REAPED_PER_SIZE) * len(cal.QUICK_SIZES_MB) * cal.QUICK_REPEATS
    assert [(s.swapped_mb, s.resident_mb, reaped) for s, reaped in quick[:5]] == [
        (50, 0, False), (0, 50, False), (50, 0, True), (50, 0, True), (100, 0, False)]
    assert {s.random_bytes for s, _ in cal.plan(quick=True, random_bytes=512)} == {512}


def storm_timing(swapped: int, exit_ms: float, result: str) -> StormTiming:
    return StormTiming(1, swapped, True, swapped * 256, 3.9, [round(exit_ms * 1e6)], None, [result])


def test_mrelease_ratios_per_size_from_the_kills_whose_reaper_got_the_mm() -> None:
    alone = [timing(100, 0, 10), timing(100, 0, 12), timing(200, 0, 20), timing(0, 200, 9)]
    reaped = [storm_timing(100, 9, "ok"), storm_timing(100, 11, "ok"), storm_timing(200, 30, "ESRCH"),
              storm_timing(100, 5, "ESRCH"), storm_timing(50, 5, "ok")]
    # 200 MB: no reaper got the mm; 50 MB: never measured alone; 100 MB: median 10 ms / median alone 11 ms
    assert cal.mrelease_ratios(alone, reaped) == [cal.ReapedSize(100, 2, 3, pytest.approx(10 / 11))]
    assert cal.mrelease_ratios(alone, [storm_timing(200, 30, "ESRCH")]) == []


def test_transfer_cost_search_finds_the_smallest_cost_with_no_shortfall() -> None:
    calls: list[int] = []

    def excess(ns: int) -> float:
        calls.append(ns)
        return 0.5 + ns / 100 - 0.9

    assert cal.fit_transfer_ns(excess) == 40 and len(calls) <= 12
    assert cal.fit_transfer_ns(lambda ns: ns + 1.0) == 0
    assert cal.fit_transfer_ns(lambda ns: -1.0) == cal.MAX_TRANSFER_NS


def test_the_model_ratio_grows_with_the_transfer_cost_and_the_fit_lands_on_it(tmp_path: Path) -> None:
    base = ROOT / "configs" / "devices" / "vm_2core.toml"
    points = plane(0.7, 0.0993, 0.0414, [(50, 0), (200, 0), (0, 50), (0, 200)])
    fit = cal.fit_exit_costs(points)
    memory = {"total_mb": 24576, "kernel_mb": 512, "watermark_scale_factor": 10, "zram_disksize_mb": 8192}

    def fitted(target: float) -> cal.TransferFit:
        sizes = [cal.ReapedSize(20, 1, 1, target), cal.ReapedSize(50, 2, 3, target)]
        return cal.fit_transfer(lambda ns: profile(cal.TransferFit(ns, sizes)), sizes, 3.9)

    def profile(transfer: cal.TransferFit) -> str:
        return cal.profile_toml("fitted", fit, {"compress_page_ns": 3000}, 2, memory, points, "a test",
                                load_device(base), base, transfer)

    low, high = fitted(0.7), fitted(1.1)
    assert low.transfer_ns < high.transfer_ns
    # the smallest cost whose modelled ratios, weighted by the successful reaps, reach the measured ones
    for result, target in ((low, 0.7), (high, 1.1)):
        assert sum(s.reaped_ok * (s.model_ratio - target) for s in result.sizes) >= -1e-3
    path = tmp_path / "fitted.toml"
    path.write_text(profile(high))
    assert load_device(path).costs.cacheline_transfer_ns == high.transfer_ns
    assert f"cacheline_transfer_ns = {high.transfer_ns}    # fitted" in path.read_text()


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
    swaps_before = active_swaps()
    out = tmp_path / "vm.toml"
    proc = exitstorm("calibrate", "--quick", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert active_swaps() == swaps_before  # ZRAM put back as it was
    raw = json.loads(out.with_suffix(".measurements.json").read_text())
    assert len(raw["kills"]) + len(raw["reaped_kills"]) == len(cal.plan(quick=True))
    assert all(len(k["exit_ns"]) == 1 and k["mrelease_results"][0] in ("ok", "ESRCH") for k in raw["reaped_kills"])
    if raw["transfer_fit"] is not None:
        assert f"cacheline_transfer_ns = {raw['transfer_fit']['transfer_ns']}    # fitted" in out.read_text()
    for kill in raw["kills"]:
        assert kill["kill_to_reap_ns"] > 0 and kill["kill_to_returned_ns"] is not None
        if kill["swapped_mb"]:
            assert kill["vm_swap_kb"] >= kill["swapped_mb"] * 1024 * 0.95 and kill["pool_kb"] > 0
    exp = load_experiment(VM_STORM, [f'device="{out}"'])
    costs = exp.device.costs
    assert costs.swap_entry_free_ns > 0 and costs.present_page_free_ns > 0 and costs.compress_page_ns > 0
    # bigger victims take longer to reap
    medians = {(m["swapped_mb"], m["resident_mb"]): m["kill_to_reap_ms"] for m in raw["medians_ms"]}
    assert medians[(200, 0)] > medians[(50, 0)] and medians[(0, 200)] > medians[(0, 50)]
