"""``exitstorm calibrate``: a device profile fitted to single-process kills on this machine's kernel.

Victims of several sizes, either all swapped (in ZRAM) or all resident, are
SIGKILLed one at a time (:mod:`exitstorm.realkernel.victims`). The model's exit of one
process costs ``exit_fixed_ns + swapped pages x swap_entry_free_ns +
resident pages x present_page_free_ns`` of CPU, and alone on a core its
latency is that cost, so a least-squares line through the median kill →
reap of each size gives the three costs (one shared intercept). The
victims' MADV_PAGEOUT gives ``compress_page_ns``. Then one concurrent storm
sets the contention: two swapped victims SIGKILLed together, a few times.
Alone, a victim's exit pays no cache-line transfer; two exits on two CPUs
pay them on every shared line of the swap-free path, inside its critical
sections, so ``cacheline_transfer_ns`` is the value at which the model's
median kill → reap of that storm is the measured one. The model's response
grows with the cost, and the search checks that it did at every point it
tried. Every other storm size, process_mrelease, resident-only storms and
every preview remain predictions (``exitstorm validate``). The kernel's
preemption model and tick are read from the running kernel. The other
costs are not measured here: they come from a base device profile
(``--base``), as the estimates they are there, and so do the cpuset names.
"""

from __future__ import annotations

import gzip
import json
import os
import platform
import re
import statistics
import subprocess
import tempfile
from fractions import Fraction
from pathlib import Path
from typing import Callable, Iterable, Sequence

from attrs import asdict, frozen

from actors.kernel.memory import PAGES_PER_MB
from actors.runtime.quantities import NS_PER_MS
from exitstorm.lab.config import DeviceConfig, load_device, load_experiment
from exitstorm.outputs.results import write_whole
from exitstorm.realkernel.validate import DEFAULT_SCENARIO, Cell, harness_sampling, sim_seeds, simulate
from exitstorm.realkernel.victims import (DEFAULT_RANDOM_BYTES, ExitTiming, StormTiming, VictimSpec, Victims,
    check_random_bytes)
from exitstorm.realkernel.zram import ZramSwap, meminfo_mb
from exitstorm.schema import ConfigError

#: victim sizes (MB) and kills per size: the full plan takes a few minutes, --quick under one
FULL_SIZES_MB = (50, 100, 200, 400, 800)
FULL_REPEATS = 5
QUICK_SIZES_MB = (50, 100, 200)
QUICK_REPEATS = 3
#: the device whose unmeasured costs and cpuset names a calibrated profile starts from
DEFAULT_BASE = Path("configs/devices/vm_2core.toml")
#: costs calibration does not measure: taken from the base profile
UNMEASURED_COSTS = ("file_page_unmap_ns", "alloc_page_ns")
#: the concurrent storm that sets the contention: this many victims of this size, SIGKILLed together
STORM_COUNT = 2
STORM_SWAPPED_MB = 200
#: the search range of the fitted cache-line transfer cost, ns
MAX_TRANSFER_NS = 1000


@frozen
class StormFit:
    """cacheline_transfer_ns at which the model's storm of STORM_COUNT victims takes the measured median."""

    transfer_ns: int
    count: int
    swapped_mb: int
    #: median over the storms of the victims' kill → reap, ms
    measured_ms: float
    model_ms: float
    #: every (transfer_ns, model ms) the search tried, in cost order
    tried: list[tuple[int, float]]
    #: the model's response never fell as the cost grew, over every point tried
    monotone: bool


def search_monotone(response: Callable[[int], float], target: float, hi: int = MAX_TRANSFER_NS
                    ) -> tuple[int, list[tuple[int, float]], bool]:
    """The integer x in 0..hi whose response is nearest ``target``, for a response that grows with x.

    Bisection for the smallest x with response(x) >= target, then the nearer of it and x - 1. Returns x,
    every point tried in x order, and whether the response was non-decreasing over them (if not, bisection's
    answer is one of several and the caller must say so).
    """
    seen: dict[int, float] = {}

    def at(x: int) -> float:
        if x not in seen:
            seen[x] = response(x)
        return seen[x]

    lo, top = 0, hi
    if at(hi) < target:
        lo = hi
    while lo < top:
        mid = (lo + top) // 2
        if at(mid) >= target:
            top = mid
        else:
            lo = mid + 1
    best = lo
    if best > 0 and abs(at(best - 1) - target) < abs(at(best) - target):
        best -= 1
    tried = sorted(seen.items())
    monotone = all(a[1] <= b[1] for a, b in zip(tried, tried[1:]))
    return best, tried, monotone


@frozen
class ExitFit:
    """kill → reap ≈ fixed_ms + ms_per_mb_swapped x swapped MB + ms_per_mb_resident x resident MB."""

    fixed_ms: float
    ms_per_mb_swapped: float
    ms_per_mb_resident: float
    #: the largest |fit - median| / median over the sizes fitted
    max_relative_error: float


def fit_exit_costs(points: Sequence[tuple[float, float, float]]) -> ExitFit:
    """Least squares for t = f + s x swapped + r x resident over ``(swapped_mb, resident_mb, t_ms)`` points.

    Solved exactly in rationals (normal equations), so points on a plane give
    back its coefficients exactly. A fixed cost cannot be negative: when the
    best plane has f < 0, the fit is the best one with f = 0.
    """
    rows = [(Fraction(1), Fraction(s), Fraction(r), Fraction(t)) for s, r, t in points]
    if len(rows) < 3 or not any(r[1] for r in rows) or not any(r[2] for r in rows):
        raise ValueError("the fit needs at least 3 points, some swapped and some resident")
    f, s, r = _least_squares(rows, (0, 1, 2))
    if f < 0:
        s, r = _least_squares(rows, (1, 2))
        f = Fraction(0)
    worst = max((abs(f + s * Fraction(sw) + r * Fraction(re) - Fraction(t)) / Fraction(t)
                 for sw, re, t in points if t), default=Fraction(0))
    return ExitFit(float(f), float(s), float(r), float(worst))


def storm_median_ms(storms: Iterable[StormTiming]) -> float:
    """The median over storms of each storm's median kill → reap (ms): validate's figure for its cell."""
    return statistics.median(statistics.median(t.exit_ns) for t in storms) / NS_PER_MS


def kernel_build() -> dict[str, int | str | None]:
    """The running kernel's preemption model and HZ: /sys/kernel/debug/sched/preempt (the mode in brackets)
    or the boot log's "Dynamic Preempt: X", else CONFIG_PREEMPT_* of /proc/config.gz; CONFIG_HZ from it."""
    config = ""
    try:
        config = gzip.decompress(Path("/proc/config.gz").read_bytes()).decode()
    except OSError:
        pass
    preempt = None
    try:
        found = re.search(r"\((\w+)\)", Path("/sys/kernel/debug/sched/preempt").read_text())
        preempt = found.group(1) if found else None
    except OSError:
        try:
            log = subprocess.run(["dmesg"], capture_output=True, text=True, timeout=10).stdout
        except (OSError, subprocess.SubprocessError):
            log = ""
        found = re.search(r"Dynamic Preempt: (\w+)", log)
        preempt = found.group(1) if found else None
    if preempt is None:
        for name, mode in (("CONFIG_PREEMPT", "full"), ("CONFIG_PREEMPT_VOLUNTARY", "voluntary"),
                           ("CONFIG_PREEMPT_NONE", "none")):
            if re.search(rf"^{name}=y$", config, re.M):
                preempt = mode
                break
    if preempt not in ("none", "voluntary", "full"):
        preempt = None
    hz = re.search(r"^CONFIG_HZ=(\d+)$", config, re.M)
    return {"preempt": preempt, "hz": int(hz.group(1)) if hz else None}



def cpumask_cpus(mask: str, cores: int) -> list[int]:
    """The CPUs below ``cores`` of a sysfs hex cpumask (comma-separated 32-bit groups, highest first)."""
    bits = int(mask.strip().replace(",", "") or "0", 16)
    return [cpu for cpu in range(cores) if bits >> cpu & 1]


def host_wq_unbound_cpumask(cores: int) -> list[int]:
    """This machine's wq_unbound_cpumask, or every core if it cannot be read (or names none of them)."""
    try:
        cpus = cpumask_cpus(Path("/sys/devices/virtual/workqueue/cpumask").read_text(), cores)
    except (OSError, ValueError):
        cpus = []
    return cpus or list(range(cores))


def fit_transfer_ns(excess: Callable[[int], float], hi: int = MAX_TRANSFER_NS) -> int:
    """The smallest integer ns in 0..hi at which ``excess`` (model minus measured, growing with the cost) is >= 0."""
    lo = 0
    if excess(hi) < 0:
        return hi
    while lo < hi:
        mid = (lo + hi) // 2
        if excess(mid) >= 0:
            hi = mid
        else:
            lo = mid + 1
    return lo


def _least_squares(rows: list[tuple[Fraction, ...]], cols: tuple[int, ...]) -> list[Fraction]:
    """The coefficients of columns ``cols`` of ``rows`` (the last item of a row is the target), exactly."""
    n = len(cols)
    m = [[sum(row[i] * row[j] for row in rows) for j in cols] + [sum(row[i] * row[-1] for row in rows)]
         for i in cols]
    for col in range(n):  # Gauss-Jordan elimination on the normal equations
        pivot = next((i for i in range(col, n) if m[i][col] != 0), None)
        if pivot is None:
            raise ValueError("the sizes measured cannot separate swapped from resident costs")
        m[col], m[pivot] = m[pivot], m[col]
        for i in range(n):
            if i != col and m[i][col]:
                factor = m[i][col] / m[col][col]
                m[i] = [x - factor * y for x, y in zip(m[i], m[col])]
    return [m[i][n] / m[i][i] for i in range(n)]


def medians(timings: Iterable[ExitTiming]) -> list[tuple[float, float, float]]:
    """Median kill → reap (ms) per (swapped MB, resident MB), in the order first measured."""
    groups: dict[tuple[int, int], list[int]] = {}
    for t in timings:
        groups.setdefault((t.swapped_mb, t.resident_mb), []).append(t.kill_to_reap_ns)
    return [(s, r, statistics.median(ns) / NS_PER_MS) for (s, r), ns in groups.items()]


def costs_from_fit(fit: ExitFit) -> dict[str, int]:
    """The model's per-item costs (ns at capacity 1.0) from a fit in ms and MB."""
    return {
        "swap_entry_free_ns": round(fit.ms_per_mb_swapped * NS_PER_MS / PAGES_PER_MB),
        "present_page_free_ns": round(fit.ms_per_mb_resident * NS_PER_MS / PAGES_PER_MB),
        "exit_fixed_ns": round(fit.fixed_ms * NS_PER_MS),
    }


def compress_page_ns(timings: Iterable[ExitTiming]) -> int:
    """Median MADV_PAGEOUT time per page of the swapped victims (reclaim + compression into ZRAM)."""
    per_page = [t.pageout_ns / (t.swapped_mb * PAGES_PER_MB) for t in timings if t.swapped_mb]
    return round(statistics.median(per_page))


def profile_toml(name: str, fit: ExitFit, measured: dict[str, int], cores: int, memory: dict[str, int],
                 points: Sequence[tuple[float, float, float]], source: str, base: DeviceConfig, base_path: Path,
                 build: dict[str, int | str | None], contention: StormFit | None = None,
                 wq_unbound_cpumask: list[int] | None = None) -> str:
    """The device profile, in the form of configs/devices/*.toml, saying where each figure comes from.

    Without a ``contention`` fit, ``cacheline_transfer_ns`` is the base profile's; without
    ``wq_unbound_cpumask`` (read from the host) the kernel's default, every core. Strings and lists of ints
    are written as JSON, which is also TOML.
    """
    costs = {**costs_from_fit(fit), **measured}
    every = json.dumps(list(range(cores)))
    lines = [
        f"# Calibrated by `exitstorm calibrate` on {source}.",
        "# Exit costs: least squares through the median kill -> reap of single-process kills",
        f"# (swapped MB, resident MB, ms): {', '.join(f'({s:g}, {r:g}, {t:.2f})' for s, r, t in points)}",
        f"# t = {fit.fixed_ms:.3f} ms + {fit.ms_per_mb_swapped:.4f} ms/MB swapped + "
        f"{fit.ms_per_mb_resident:.4f} ms/MB resident; max relative error {fit.max_relative_error:.1%}.",
        "# Raw measurements: the .measurements.json file beside this one.",
        f"name = {json.dumps(name)}",
        f"description = {json.dumps(f'{cores} cores of {source}, calibrated')}",
        "# where unbound kworkers run: " + ("/sys/devices/virtual/workqueue/cpumask at calibration"
                                            if wq_unbound_cpumask is not None else "the kernel's default, every core"),
        f"wq_unbound_cpumask = {every if wq_unbound_cpumask is None else json.dumps(wq_unbound_cpumask)}",
        "# kswapd and the oom_reaper: every core (the kernel's defaults; no pinning is read from the host)",
        f"kswapd_cpus = {every}",
        f"oom_reaper_cpus = {every}",
        "",
        "[[clusters]]",
        'name = "cpu"',
        f"count = {cores}",
        "capacity = 1.0     # costs below are per ns on these cores",
        f"# idle states: not measured, as in {base_path}'s first cluster",
        "idle_states = [" + ", ".join(
            f"{{ name = {json.dumps(st.name)}, exit_latency_us = {st.exit_latency_us:g}, "
            f"min_residency_us = {st.min_residency_us:g} }}" for st in base.clusters[0].idle_states) + "]",
        "",
        "[memory]",
        f"total_mb = {memory['total_mb']}",
        f"kernel_mb = {memory['kernel_mb']}           # MemTotal - MemAvailable at calibration",
        f"watermark_scale_factor = {memory['watermark_scale_factor']}",
        f"zram_disksize_mb = {memory['zram_disksize_mb']}",
        "",
        "[costs]",
        f"swap_entry_free_ns = {costs['swap_entry_free_ns']}       # fitted",
        f"present_page_free_ns = {costs['present_page_free_ns']}     # fitted",
        f"exit_fixed_ns = {costs['exit_fixed_ns']}          # fitted (intercept"
        + ("; the best plane's was negative, so the fit is through 0)" if not fit.fixed_ms else ")"),
        f"compress_page_ns = {costs['compress_page_ns']}        # measured: MADV_PAGEOUT per page, median",
    ]
    lines += [f"{key} = {getattr(base.costs, key):g}    # not measured: as in {base_path}"
              for key in UNMEASURED_COSTS]
    if contention is None:
        lines.append(f"cacheline_transfer_ns = {base.costs.cacheline_transfer_ns:g}    # not measured: as in "
                     f"{base_path}")
    else:
        lines.append(
            f"cacheline_transfer_ns = {contention.transfer_ns}    # fitted: {contention.count} x "
            f"{contention.swapped_mb} MB swapped killed together, median kill -> reap {contention.measured_ms:.2f} ms "
            f"measured, {contention.model_ms:.2f} ms modelled"
            + ("" if contention.monotone else " (the model's response was not monotone over the search)"))
    found = {k: v for k, v in build.items() if v is not None}
    if found:
        lines += ["", "# The running kernel's build: preemption from /sys/kernel/debug/sched/preempt or the boot "
                  "log, HZ from /proc/config.gz.", "[build]"]
        lines += [f"{key} = {json.dumps(value)}" for key, value in found.items()]
    tick = base.tick_interrupt
    lines += ["", f"# The tick interrupt's time on a busy core: not measured, as in {base_path}", "[tick_interrupt]",
              f"min_us = {tick.min_us:g}", f"max_us = {tick.max_us:g}"]
    lines += ["", f"# The cpuset names of {base_path}, each with every core, so that its scenarios run here.",
              "[cpusets]"]
    lines += [f"{json.dumps(cpuset)} = {every}" for cpuset in base.cpusets]
    return "\n".join(lines) + "\n"


def plan(quick: bool, random_bytes: int = DEFAULT_RANDOM_BYTES) -> list[tuple[VictimSpec, int]]:
    """The kills to measure, ``(victim, how many killed together)``; sizes, kinds and the storm interleaved so
    that drift spreads over all of them."""
    sizes, repeats = (QUICK_SIZES_MB, QUICK_REPEATS) if quick else (FULL_SIZES_MB, FULL_REPEATS)
    per_size = [((VictimSpec(mb, 0, random_bytes), 1), (VictimSpec(0, mb, random_bytes), 1)) for mb in sizes]
    storm = (VictimSpec(STORM_SWAPPED_MB, 0, random_bytes), STORM_COUNT)
    one_round = [kill for kills in per_size for kill in kills] + [storm]
    return one_round * repeats


def fit_contention(profile: Callable[[int], str], measured_ms: float, compression_ratio: float,
                   storms: int) -> StormFit:
    """Fit cacheline_transfer_ns so that the model's storm (the storm scenario, as ``exitstorm validate`` runs
    it, on the profile ``profile(transfer_ns)``, at as many seeds as ``storms`` were measured) has the
    measured median kill → reap."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "profile.toml"

        def storm_ms(transfer_ns: int) -> float:
            path.write_text(profile(transfer_ns))
            return statistics.median(
                simulate(DEFAULT_SCENARIO, path, Cell(STORM_COUNT, False), STORM_SWAPPED_MB, compression_ratio,
                         seed)["exit_median_ms"] for seed in sim_seeds(storms))

        transfer_ns, tried, monotone = search_monotone(storm_ms, measured_ms)
        model_ms = dict(tried)[transfer_ns]
        return StormFit(transfer_ns, STORM_COUNT, STORM_SWAPPED_MB, round(measured_ms, 3), round(model_ms, 3),
                        [(x, round(ms, 3)) for x, ms in tried], monotone)


def calibrate(out: Path, quick: bool, force: bool = False, base_path: Path = DEFAULT_BASE,
              on_kill: Callable[[int, int, str], None] | None = None,
              random_bytes: int = DEFAULT_RANDOM_BYTES) -> tuple[ExitFit, StormFit]:
    """Measure, fit, and write ``out`` (the profile) and ``out``.measurements.json.

    ``on_kill(done, total, what)`` reports each kill. Bad arguments and existing files are refused before
    anything is measured.
    """
    if out.suffix != ".toml":
        raise ConfigError(f"--out {out}: expected a .toml file name")
    check_random_bytes(random_bytes)
    base = load_device(base_path)
    raw_path = out.with_suffix(".measurements.json")
    for path in (out, raw_path):
        if path.exists() and not force:
            raise FileExistsError(f"{path} exists (use --force to replace it)")
    kills = plan(quick, random_bytes)
    sampling = harness_sampling(load_experiment(DEFAULT_SCENARIO))
    timings: list[ExitTiming] = []
    storms: list[StormTiming] = []
    with ZramSwap() as swap:
        algorithm = swap.device.comp_algorithm()
        zram_mb = swap.device.disksize() >> 20
        with Victims() as victims:
            for i, (spec, count) in enumerate(kills):
                if count > 1:
                    storms.append(victims.kill_storm(victims.spawn_storm(spec, count), None, None, sampling))
                    what = (f"{count} x {spec.swapped_mb} MB swapped together: "
                            + ", ".join(f"{ns / NS_PER_MS:.1f}" for ns in storms[-1].exit_ns) + " ms")
                else:
                    timings.append(victims.kill_and_time(spec, sampling))
                    what = (f"{spec.swapped_mb} MB swapped + {spec.resident_mb} MB resident: "
                            f"{timings[-1].kill_to_reap_ns / NS_PER_MS:.1f} ms")
                if on_kill is not None:
                    on_kill(i + 1, len(kills), what)
    points = medians(timings)
    fit = fit_exit_costs(points)
    source = f"Linux {platform.release()} ({platform.machine()}), ZRAM {algorithm}"
    memory = {
        "total_mb": meminfo_mb("MemTotal"),
        "kernel_mb": meminfo_mb("MemTotal") - meminfo_mb("MemAvailable"),
        "watermark_scale_factor": int(Path("/proc/sys/vm/watermark_scale_factor").read_text()),
        "zram_disksize_mb": zram_mb,
    }
    measured = {"compress_page_ns": compress_page_ns(timings)}
    build = kernel_build()

    def profile(contention: StormFit | None) -> str:
        cores = os.cpu_count() or 1
        return profile_toml(out.stem, fit, measured, cores, memory, points, source, base, base_path, build,
                            contention, host_wq_unbound_cpumask(cores))

    compression = statistics.median(t.compression_ratio for t in storms)
    contention = fit_contention(
        lambda ns: profile(StormFit(ns, STORM_COUNT, STORM_SWAPPED_MB, 0.0, 0.0, [], True)),
        storm_median_ms(storms), compression, len(storms))
    raw = {
        "source": source,
        "quick": quick,
        "random_bytes": random_bytes,
        "build": build,
        "fit": asdict(fit),
        "contention_fit": asdict(contention),
        "medians_ms": [{"swapped_mb": s, "resident_mb": r, "kill_to_reap_ms": t} for s, r, t in points],
        "kills": [asdict(t) for t in timings],
        "storms": [asdict(t) for t in storms],
    }
    write_whole(raw_path, json.dumps(raw, indent=2) + "\n")
    write_whole(out, profile(contention))
    return fit, contention
