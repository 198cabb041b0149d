"""``exitstorm calibrate``: a device profile fitted to single-process kills on this machine's kernel.

Victims of several sizes, either all swapped (in ZRAM) or all resident, are
SIGKILLed one at a time (:mod:`exitstorm.victims`). The model's exit of one
process costs ``exit_fixed_ns + swapped pages x swap_entry_free_ns +
resident pages x present_page_free_ns`` of CPU, and alone on a core its
latency is that cost, so a least-squares line through the median kill →
reap of each size gives the three costs (one shared intercept). The
victims' MADV_PAGEOUT gives ``compress_page_ns``. Swapped victims are also
killed with an lmkd-like reaper calling process_mrelease at once, so that
the exit and the reaper tear down the one mm on two CPUs: the model's only
cost of that sharing is cache-line transfers on the swap-free path, and
``cacheline_transfer_ns`` is the value at which the model's exit with the
reaper, relative to the exit alone, is what was measured. The other costs
are not measured here: they come from a base device profile (``--base``),
as the estimates they are there, and so do the cpuset names.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import tempfile
from fractions import Fraction
from pathlib import Path
from typing import Callable, Iterable, Sequence

from attrs import asdict, evolve, frozen

from actors.memory import PAGES_PER_MB
from actors.runtime import NS_PER_MS
from exitstorm.config import Device, load_device
from exitstorm.results import write_whole
from exitstorm.schema import ConfigError
from exitstorm.validate import DEFAULT_SCENARIO, Cell, reaper_nice, simulate
from exitstorm.victims import DEFAULT_RANDOM_BYTES, ExitTiming, StormTiming, Victims, VictimSpec, check_random_bytes
from exitstorm.zram import ZramSwap, comp_algorithm, disksize_mb, meminfo_mb

#: victim sizes (MB) and kills per size: the full plan takes a few minutes, --quick under one
FULL_SIZES_MB = (50, 100, 200, 400, 800)
FULL_REPEATS = 5
QUICK_SIZES_MB = (50, 100, 200)
QUICK_REPEATS = 3
#: the device whose unmeasured costs and cpuset names a calibrated profile starts from
DEFAULT_BASE = Path("configs/devices/vm_2core.toml")
#: costs calibration does not measure: taken from the base profile
UNMEASURED_COSTS = ("file_page_unmap_ns", "alloc_page_ns")
#: kills with a concurrent process_mrelease per swapped size and repeat (the reaper often loses the race to
#: exit_mm, and only the kills it wins measure the sharing)
REAPED_PER_SIZE = 2
#: the search range of the fitted cache-line transfer cost, ns
MAX_TRANSFER_NS = 1000


@frozen
class ReapedSize:
    """Kills of one swapped size with a concurrent process_mrelease."""

    swapped_mb: int
    #: kills whose reaper got the mm (the others lost the race to exit_mm: ESRCH) / all of them
    reaped_ok: int
    reaped: int
    #: median kill → reap of the kills whose reaper got the mm, over the median alone at this size
    measured_ratio: float
    model_ratio: float | None = None


@frozen
class TransferFit:
    """cacheline_transfer_ns at which the model's exit-with-reaper / exit-alone ratios best meet the measured ones."""

    transfer_ns: int
    sizes: list[ReapedSize]


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


def mrelease_ratios(alone: Iterable[ExitTiming], reaped: Iterable[StormTiming]) -> list[ReapedSize]:
    """Per swapped size whose reaper got the mm at least once: the exit with the reaper relative to alone."""
    alone_ms = {s: t for s, r, t in medians(alone) if s and not r}
    by_size: dict[int, list[StormTiming]] = {}
    for t in reaped:
        by_size.setdefault(t.swapped_mb, []).append(t)
    out = []
    for size in sorted(by_size):
        ok = [t.exit_ns[0] for t in by_size[size] if t.mrelease_results == ["ok"]]
        if ok and size in alone_ms:
            out.append(ReapedSize(size, len(ok), len(by_size[size]), statistics.median(ok) / NS_PER_MS / alone_ms[size]))
    return out


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
                 points: Sequence[tuple[float, float, float]], source: str, base: Device, base_path: Path,
                 transfer: TransferFit | None = None) -> str:
    """The device profile, in the form of configs/devices/*.toml, saying where each figure comes from.

    Without a ``transfer`` fit, ``cacheline_transfer_ns`` is the base profile's. Strings and lists of ints
    are written as JSON, which is also TOML.
    """
    costs = {**costs_from_fit(fit), **measured}
    lines = [
        f"# Calibrated by `exitstorm calibrate` on {source}.",
        "# Exit costs: least squares through the median kill -> reap of single-process kills",
        f"# (swapped MB, resident MB, ms): {', '.join(f'({s:g}, {r:g}, {t:.2f})' for s, r, t in points)}",
        f"# t = {fit.fixed_ms:.3f} ms + {fit.ms_per_mb_swapped:.4f} ms/MB swapped + "
        f"{fit.ms_per_mb_resident:.4f} ms/MB resident; max relative error {fit.max_relative_error:.1%}.",
        "# Raw measurements: the .measurements.json file beside this one.",
        f"name = {json.dumps(name)}",
        f"description = {json.dumps(f'{cores} cores of {source}, calibrated')}",
        "",
        "[[clusters]]",
        'name = "cpu"',
        f"count = {cores}",
        "capacity = 1.0     # costs below are per ns on these cores",
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
    if transfer is None:
        lines.append(f"cacheline_transfer_ns = {base.costs.cacheline_transfer_ns:g}    # not measured (no reaper "
                     f"got a victim's mm before its exit did): as in {base_path}")
    else:
        ratios = ", ".join(f"{r.swapped_mb} MB: {r.measured_ratio:.3f}" + (
            f" (model {r.model_ratio:.3f})" if r.model_ratio is not None else "") for r in transfer.sizes)
        lines.append(f"cacheline_transfer_ns = {transfer.transfer_ns}    # fitted to exit with process_mrelease / "
                     f"exit alone, {ratios}")
    every = json.dumps(list(range(cores)))
    lines += ["", f"# The cpuset names of {base_path}, each with every core, so that its scenarios run here.",
              "[cpusets]"]
    lines += [f"{json.dumps(cpuset)} = {every}" for cpuset in base.cpusets]
    return "\n".join(lines) + "\n"


def plan(quick: bool, random_bytes: int = DEFAULT_RANDOM_BYTES) -> list[tuple[VictimSpec, bool]]:
    """The kills to measure, ``(victim, with a concurrent process_mrelease)``; sizes and kinds interleaved so
    that drift spreads over all of them."""
    sizes, repeats = (QUICK_SIZES_MB, QUICK_REPEATS) if quick else (FULL_SIZES_MB, FULL_REPEATS)
    per_size = [((VictimSpec(mb, 0, random_bytes), False), (VictimSpec(0, mb, random_bytes), False))
                + ((VictimSpec(mb, 0, random_bytes), True),) * REAPED_PER_SIZE for mb in sizes]
    return [kill for _ in range(repeats) for kills in per_size for kill in kills]


def fit_transfer(profile: Callable[[int], str], sizes: list[ReapedSize], compression_ratio: float) -> TransferFit:
    """Fit cacheline_transfer_ns by simulating one victim of each size with and without a reaper on the profile
    ``profile(transfer_ns)`` (the storm scenario, as ``exitstorm validate`` runs it): the smallest cost at which
    the model's ratios, weighted by the kills whose reaper got the mm, are no lower than the measured ones."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "profile.toml"

        def exit_ms(transfer_ns: int, mrelease: bool, swapped_mb: int) -> float:
            path.write_text(profile(transfer_ns))
            cell = Cell(1, mrelease)
            return simulate(DEFAULT_SCENARIO, path, cell, swapped_mb, compression_ratio)["exit_median_ms"]

        alone = {s.swapped_mb: exit_ms(0, False, s.swapped_mb) for s in sizes}  # one CPU: no line ever moves
        memo: dict[int, list[float]] = {}

        def model(transfer_ns: int) -> list[float]:
            if transfer_ns not in memo:
                memo[transfer_ns] = [exit_ms(transfer_ns, True, s.swapped_mb) / alone[s.swapped_mb] for s in sizes]
            return memo[transfer_ns]

        def excess(transfer_ns: int) -> float:
            return sum(s.reaped_ok * (m - s.measured_ratio) for s, m in zip(sizes, model(transfer_ns)))

        transfer_ns = fit_transfer_ns(excess)
        return TransferFit(transfer_ns, [evolve(s, model_ratio=round(m, 4), measured_ratio=round(s.measured_ratio, 4))
                                         for s, m in zip(sizes, model(transfer_ns))])


def calibrate(out: Path, quick: bool, force: bool = False, base_path: Path = DEFAULT_BASE,
              on_kill: Callable[[int, int, str], None] | None = None,
              random_bytes: int = DEFAULT_RANDOM_BYTES) -> tuple[ExitFit, TransferFit | None]:
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
    nice = reaper_nice(DEFAULT_SCENARIO)
    timings: list[ExitTiming] = []
    reaped: list[StormTiming] = []
    with ZramSwap():
        algorithm = comp_algorithm()
        zram_mb = disksize_mb()
        with Victims() as victims:
            for i, (spec, mrelease) in enumerate(kills):
                if mrelease:
                    reaped.append(victims.kill_storm(victims.spawn_storm(spec, 1), nice))
                    what = (f"{spec.swapped_mb} MB swapped, process_mrelease {reaped[-1].mrelease_results[0]}: "
                            f"{reaped[-1].exit_ns[0] / NS_PER_MS:.1f} ms")
                else:
                    timings.append(victims.kill_and_time(spec))
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

    def profile(transfer: TransferFit | None) -> str:
        return profile_toml(out.stem, fit, measured, os.cpu_count() or 1, memory, points, source, base, base_path,
                            transfer)

    transfer = None
    sizes = mrelease_ratios(timings, reaped)
    if sizes:
        compression = statistics.median(t.compression_ratio for t in reaped)
        transfer = fit_transfer(lambda ns: profile(TransferFit(ns, sizes)), sizes, compression)
    raw = {
        "source": source,
        "quick": quick,
        "random_bytes": random_bytes,
        "fit": asdict(fit),
        "transfer_fit": None if transfer is None else asdict(transfer),
        "medians_ms": [{"swapped_mb": s, "resident_mb": r, "kill_to_reap_ms": t} for s, r, t in points],
        "kills": [asdict(t) for t in timings],
        "reaped_kills": [asdict(t) for t in reaped],
    }
    write_whole(raw_path, json.dumps(raw, indent=2) + "\n")
    write_whole(out, profile(transfer))
    return fit, transfer
