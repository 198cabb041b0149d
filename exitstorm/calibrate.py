"""``exitstorm calibrate``: a device profile fitted to single-process kills on this machine's kernel.

Victims of several sizes, either all swapped (in ZRAM) or all resident, are
SIGKILLed one at a time (:mod:`exitstorm.victims`). The model's exit of one
process costs ``exit_fixed_ns + swapped pages x swap_entry_free_ns +
resident pages x present_page_free_ns`` of CPU, and alone on a core its
latency is that cost, so a least-squares line through the median kill →
reap of each size gives the three costs (one shared intercept). The
victims' MADV_PAGEOUT gives ``compress_page_ns``. The other costs are not
measured here: they come from a base device profile (``--base``), as the
estimates they are there, and so do the cpuset names.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
from fractions import Fraction
from pathlib import Path
from typing import Callable, Iterable, Sequence

from attrs import asdict, frozen

from actors.memory import PAGES_PER_MB
from exitstorm.config import Device, load_device
from exitstorm.schema import ConfigError
from exitstorm.victims import DEFAULT_RANDOM_BYTES, ExitTiming, Victims, VictimSpec, check_random_bytes
from exitstorm.zram import ZramSwap, comp_algorithm, disksize_mb, meminfo_mb

#: victim sizes (MB) and kills per size: the full plan takes a few minutes, --quick under one
FULL_SIZES_MB = (50, 100, 200, 400, 800)
FULL_REPEATS = 5
QUICK_SIZES_MB = (50, 100, 200)
QUICK_REPEATS = 3
#: the device whose unmeasured costs and cpuset names a calibrated profile starts from
DEFAULT_BASE = Path("configs/devices/vm_2core.toml")
#: costs calibration does not measure: taken from the base profile
UNMEASURED_COSTS = ("file_page_unmap_ns", "alloc_page_ns", "cacheline_transfer_ns")


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
    back its coefficients exactly.
    """
    rows = [(Fraction(1), Fraction(s), Fraction(r), Fraction(t)) for s, r, t in points]
    if len(rows) < 3 or not any(r[1] for r in rows) or not any(r[2] for r in rows):
        raise ValueError("the fit needs at least 3 points, some swapped and some resident")
    ata = [[sum(row[i] * row[j] for row in rows) for j in range(3)] for i in range(3)]
    atb = [sum(row[i] * row[3] for row in rows) for i in range(3)]
    f, s, r = _solve3(ata, atb)
    worst = max((abs(f + s * Fraction(sw) + r * Fraction(re) - Fraction(t)) / Fraction(t)
                 for sw, re, t in points if t), default=Fraction(0))
    return ExitFit(float(f), float(s), float(r), float(worst))


def _solve3(a: list[list[Fraction]], b: list[Fraction]) -> tuple[Fraction, Fraction, Fraction]:
    """Gauss-Jordan elimination on a 3 x 3 system (exact)."""
    m = [row[:] + [rhs] for row, rhs in zip(a, b)]
    for col in range(3):
        pivot = next((i for i in range(col, 3) if m[i][col] != 0), None)
        if pivot is None:
            raise ValueError("the sizes measured cannot separate swapped from resident costs")
        m[col], m[pivot] = m[pivot], m[col]
        for i in range(3):
            if i != col and m[i][col]:
                factor = m[i][col] / m[col][col]
                m[i] = [x - factor * y for x, y in zip(m[i], m[col])]
    return m[0][3] / m[0][0], m[1][3] / m[1][1], m[2][3] / m[2][2]


def medians(timings: Iterable[ExitTiming]) -> list[tuple[float, float, float]]:
    """Median kill → reap (ms) per (swapped MB, resident MB), in the order first measured."""
    groups: dict[tuple[int, int], list[int]] = {}
    for t in timings:
        groups.setdefault((t.swapped_mb, t.resident_mb), []).append(t.kill_to_reap_ns)
    return [(s, r, statistics.median(ns) / 1e6) for (s, r), ns in groups.items()]


def costs_from_fit(fit: ExitFit) -> dict[str, int]:
    """The model's per-item costs (ns at capacity 1.0) from a fit in ms and MB."""
    return {
        "swap_entry_free_ns": round(fit.ms_per_mb_swapped * 1e6 / PAGES_PER_MB),
        "present_page_free_ns": round(fit.ms_per_mb_resident * 1e6 / PAGES_PER_MB),
        "exit_fixed_ns": round(fit.fixed_ms * 1e6),
    }


def compress_page_ns(timings: Iterable[ExitTiming]) -> int:
    """Median MADV_PAGEOUT time per page of the swapped victims (reclaim + compression into ZRAM)."""
    per_page = [t.pageout_ns / (t.swapped_mb * PAGES_PER_MB) for t in timings if t.swapped_mb]
    return round(statistics.median(per_page))


def profile_toml(name: str, fit: ExitFit, measured: dict[str, int], cores: int, memory: dict[str, int],
                 points: Sequence[tuple[float, float, float]], source: str, base: Device, base_path: Path) -> str:
    """The device profile, in the form of configs/devices/*.toml, saying where each figure comes from.

    Strings and lists of ints are written as JSON, which is also TOML.
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
        f"exit_fixed_ns = {costs['exit_fixed_ns']}          # fitted (intercept)",
        f"compress_page_ns = {costs['compress_page_ns']}        # measured: MADV_PAGEOUT per page, median",
    ]
    lines += [f"{key} = {getattr(base.costs, key):g}    # not measured: as in {base_path}"
              for key in UNMEASURED_COSTS]
    every = json.dumps(list(range(cores)))
    lines += ["", f"# The cpuset names of {base_path}, each with every core, so that its scenarios run here.",
              "[cpusets]"]
    lines += [f"{json.dumps(cpuset)} = {every}" for cpuset in base.cpusets]
    return "\n".join(lines) + "\n"


def plan(quick: bool, random_bytes: int = DEFAULT_RANDOM_BYTES) -> list[VictimSpec]:
    """The kills to measure, sizes interleaved so that drift spreads over all of them."""
    sizes, repeats = (QUICK_SIZES_MB, QUICK_REPEATS) if quick else (FULL_SIZES_MB, FULL_REPEATS)
    return [spec for _ in range(repeats) for mb in sizes
            for spec in (VictimSpec(mb, 0, random_bytes), VictimSpec(0, mb, random_bytes))]


def write_whole(path: Path, text: str) -> None:
    """Write ``path`` whole: a reader sees the old file or the new one (temp file + rename)."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def calibrate(out: Path, quick: bool, force: bool = False, base_path: Path = DEFAULT_BASE,
              on_kill: Callable[[int, int, ExitTiming], None] | None = None,
              random_bytes: int = DEFAULT_RANDOM_BYTES) -> ExitFit:
    """Measure, fit, and write ``out`` (the profile) and ``out``.measurements.json.

    Bad arguments and existing files are refused before anything is measured.
    """
    if out.suffix != ".toml":
        raise ConfigError(f"--out {out}: expected a .toml file name")
    check_random_bytes(random_bytes)
    base = load_device(base_path)
    raw_path = out.with_suffix(".measurements.json")
    for path in (out, raw_path):
        if path.exists() and not force:
            raise FileExistsError(f"{path} exists (use --force to replace it)")
    specs = plan(quick, random_bytes)
    timings: list[ExitTiming] = []
    with ZramSwap():
        algorithm = comp_algorithm()
        zram_mb = disksize_mb()
        with Victims() as victims:
            for i, spec in enumerate(specs):
                timings.append(victims.kill_and_time(spec))
                if on_kill is not None:
                    on_kill(i + 1, len(specs), timings[-1])
    points = medians(timings)
    fit = fit_exit_costs(points)
    source = f"Linux {platform.release()} ({platform.machine()}), ZRAM {algorithm}"
    memory = {
        "total_mb": meminfo_mb("MemTotal"),
        "kernel_mb": meminfo_mb("MemTotal") - meminfo_mb("MemAvailable"),
        "watermark_scale_factor": int(Path("/proc/sys/vm/watermark_scale_factor").read_text()),
        "zram_disksize_mb": zram_mb,
    }
    text = profile_toml(out.stem, fit, {"compress_page_ns": compress_page_ns(timings)}, os.cpu_count() or 1,
                        memory, points, source, base, base_path)
    raw = {
        "source": source,
        "quick": quick,
        "random_bytes": random_bytes,
        "fit": asdict(fit),
        "medians_ms": [{"swapped_mb": s, "resident_mb": r, "kill_to_reap_ms": t} for s, r, t in points],
        "kills": [asdict(t) for t in timings],
    }
    write_whole(raw_path, json.dumps(raw, indent=2) + "\n")
    write_whole(out, text)
    return fit
