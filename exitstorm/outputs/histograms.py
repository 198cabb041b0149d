"""Latency recording into HdrHistograms, written as the standard HDR files.

Each recorder keeps a whole-run histogram and one histogram per interval of
virtual time, so that ``NAME.hlog`` is a genuine HdrHistogram interval log
(readable by HistogramLogProcessor, HdrHistogram's plotter, hdrh's reader) and
``NAME.hgrm`` is the usual percentile distribution. Values are ns; files show
ms (value unit ratio 1e6), as HdrHistogram's tools expect.
"""

from __future__ import annotations

import binascii
import collections
import itertools
import math
import zlib
from pathlib import Path

from hdrh.histogram import HdrHistogram
from hdrh.log import HistogramLogReader, HistogramLogWriter

from actors.runtime.quantities import NS_PER_MS, NS_PER_S
from exitstorm.outputs.results import comparison_runs
from exitstorm.schema import ConfigError

#: Histogram range and precision: 1 µs .. 1 hour, 3 significant digits.
LOWEST_NS = 1_000
HIGHEST_NS = 3_600_000_000_000
SIGNIFICANT_FIGURES = 3


def new_histogram() -> HdrHistogram:
    """An empty histogram of exitstorm's range and precision (1 µs .. 1 h, 3 digits)."""
    return HdrHistogram(LOWEST_NS, HIGHEST_NS, SIGNIFICANT_FIGURES)


#: values are kept in units of the histogram's finest resolution (2**unit_magnitude ns): flooring
#: to it never changes a value's bucket, and equal values are recorded in one call
_UNIT_SHIFT = new_histogram().unit_magnitude


def _record_units(h: HdrHistogram, counts: dict[int, int]) -> None:
    """Record counts of values kept in units of the finest resolution."""
    if counts:
        record_counts(h, {unit << _UNIT_SHIFT: n for unit, n in counts.items()})


class LatencyRecorder:
    """Records ``(t_ns, value_ns)`` samples, in time order; clamps values into the histogram's range.

    Only the open interval's samples are kept as integers: when a sample
    falls in a later interval, the open one is closed: its histogram is
    built (counts of equal values at once), encoded as its ``.hlog`` line,
    added to the whole run's histogram, and dropped. So a recorder holds one
    interval of samples, one histogram (~100 KB of counts) and a line of a
    few hundred bytes per interval, however long the run and however many
    samples it takes.
    """

    def __init__(self, name: str, interval_ns: int) -> None:
        if interval_ns <= 0:
            raise ValueError("interval must be positive")
        self.name = name
        self.interval_ns = interval_ns
        self.clamped = 0
        self._k: int | None = None
        self._open: list[int] = []
        self._lines: list[str] = []
        self._closed = new_histogram()
        self._total: HdrHistogram | None = None

    def record(self, t_ns: int, value_ns: int) -> None:
        if value_ns > HIGHEST_NS:
            value_ns = HIGHEST_NS
            self.clamped += 1
        elif value_ns < 0:
            value_ns = 0
        k = t_ns // self.interval_ns
        if k != self._k:
            if self._k is not None:
                if k < self._k:
                    raise ValueError(f"{self.name}: a sample at {t_ns} ns came after one at "
                                     f"{self._k * self.interval_ns} ns or later (samples come in time order)")
                self._close((self._k + 1) * self.interval_ns)
            self._k = k
        self._open.append(value_ns >> _UNIT_SHIFT)
        self._total = None

    def _close(self, end_ns: int) -> None:
        """Encode the open interval's line (ending at ``end_ns``) and add it to the whole run."""
        counts = collections.Counter(self._open)
        h = new_histogram()
        _record_units(h, counts)
        start = self._k * self.interval_ns
        self._lines.append("%.3f,%.3f,%.3f,%s\n" % (start / NS_PER_S, (end_ns - start) / NS_PER_S,
                                                    h.get_max_value() / NS_PER_MS, h.encode().decode()))
        _record_units(self._closed, counts)
        self._open = []

    @property
    def samples_held(self) -> int:
        """Samples kept as integers: those of the open interval."""
        return len(self._open)

    @property
    def total(self) -> HdrHistogram:
        """The whole run."""
        if not self._open:
            return self._closed
        if self._total is None:
            h = self._total = new_histogram()
            h.add(self._closed)
            h.min_value = self._closed.min_value  # (add takes an empty histogram's minimum as 0)
            _record_units(h, collections.Counter(self._open))
        return self._total

    @property
    def count(self) -> int:
        return self._closed.total_count + len(self._open)

    def percentiles_ms(self) -> dict[str, float | int]:
        """p50/p90/p99/max in ms (3 decimals) and the sample count."""
        return hdr_percentiles_ms(self.total)

    def write(self, directory: Path, end_ns: int) -> None:
        """Write ``NAME.hlog`` (interval log, virtual seconds from 0) and ``NAME.hgrm``; the open interval is
        closed at ``end_ns`` (the run's end)."""
        if self._open:
            start = self._k * self.interval_ns
            self._close(min(start + self.interval_ns, max(end_ns, start + 1)))
        total = self.total
        directory.mkdir(parents=True, exist_ok=True)
        with (directory / f"{self.name}.hlog").open("w") as fh:
            writer = HistogramLogWriter(fh)
            writer.output_comment(f"[exitstorm {self.name}: values in ns, timestamps in virtual seconds]")
            writer.output_log_format_version()
            writer.output_base_time(0)
            writer.output_legend()
            writer.log.writelines(self._lines)
        (directory / f"{self.name}.hgrm").write_text(percentile_distribution(total, NS_PER_MS))


def read_hlog(path: Path) -> HdrHistogram:
    """The whole-run histogram of an ``.hlog`` interval log: its intervals added up. A log with lines that
    are neither comments, the column header nor intervals is refused (hdrh would skip them and report
    count 0)."""
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read it as an HdrHistogram log ({exc})") from None
    intervals = [line for line in lines if line.strip() and not line.startswith(("#", '"StartTimestamp"'))]
    reader = HistogramLogReader(str(path), new_histogram())
    total = new_histogram()
    read = 0
    try:
        while (h := reader.get_next_interval_histogram()) is not None:
            total.add(h)
            read += 1
    except (ValueError, IndexError, TypeError, zlib.error, binascii.Error) as exc:
        raise ConfigError(f"{path}: corrupt HdrHistogram log ({exc})") from None
    finally:
        reader.close()
    if read != len(intervals):
        raise ConfigError(f"{path}: corrupt HdrHistogram log ({len(intervals) - read} of its {len(intervals)} "
                          f"interval lines unreadable)")
    return total


def hdr_percentiles_ms(h: HdrHistogram, percentiles: tuple[float, ...] = (50, 90, 99)) -> dict[str, float | int]:
    """``pNN`` (ms, 3 decimals) for each percentile, ``max`` and ``count``; just ``count`` when empty.

    A percentile is its bucket's highest equivalent value (HdrHistogram's
    getValueAtPercentile), never above the max. The max is the highest
    non-empty slot's highest equivalent value, 0 when that is the slot of 0:
    the same for a histogram recorded here and one read back from an
    ``.hlog`` (which keeps counts, not the exact max; hdrh reports an exact 0
    for the first and the slot's top for the second).
    """
    total = h.get_total_count()
    if not total:
        return {"count": 0}
    cells = nonzero_cells(h)
    lowest, highest, _count = cells[-1]
    top = highest if lowest else 0
    figures: dict[str, float | int] = {
        f"p{p:g}": round(min(value_at_percentile(h, cells, p), top) / NS_PER_MS, 3) for p in percentiles
    }
    figures["max"] = round(top / NS_PER_MS, 3)
    figures["count"] = total
    return figures


def record_counts(h: HdrHistogram, counts: dict[int, int]) -> None:
    """``h.record_value(value, count)`` for each item, with hdrh's index arithmetic inlined (values in range)."""
    um = h.unit_magnitude
    shm = h.sub_bucket_half_count_magnitude
    half = h.sub_bucket_half_count
    mask = h.sub_bucket_mask
    slots = h.counts
    for value, count in counts.items():
        bucket = (value | mask).bit_length() - um - (shm + 1)
        slots[((bucket + 1) << shm) + (value >> (bucket + um)) - half] += count
    h.total_count += sum(counts.values())
    h.min_value = min(h.min_value, min(counts))
    h.max_value = max(h.max_value, max(counts))


def nonzero_cells(h: HdrHistogram) -> list[tuple[int, int, int]]:
    """``(lowest, highest equivalent value, count)`` of every non-empty counts slot, ascending.

    The non-empty slots are found in C; each slot's value range is hdrh's
    get_value_from_index / get_highest_equivalent_value, computed from the index.
    """
    um = h.unit_magnitude
    shm = h.sub_bucket_half_count_magnitude
    half = h.sub_bucket_half_count
    counts = memoryview(h.counts).cast("B").cast("Q").tolist()
    cells = []
    for i in itertools.compress(range(len(counts)), counts):
        bucket = (i >> shm) - 1
        sub = (i & (half - 1)) + half
        if bucket < 0:
            sub -= half
            bucket = 0
        low = sub << (bucket + um)
        cells.append((low, low + (1 << (bucket + um)) - 1, counts[i]))
    return cells


def value_at_percentile(h: HdrHistogram, cells: list[tuple[int, int, int]], percentile: float) -> int:
    """HdrHistogram getValueAtPercentile(): highest equivalent value reaching the target count."""
    target = max(1, int(min(percentile, 100.0) * h.get_total_count() / 100 + 0.5))
    cumulative = 0
    for _low, high, count in cells:
        cumulative += count
        if cumulative >= target:
            return high
    return 0


def _next_level(level: float, ticks_per_half_distance: int) -> float:
    half_distances = int(math.log(100.0 / (100.0 - level)) / math.log(2)) + 1
    return level + 100.0 / (ticks_per_half_distance * 2**half_distances)


def percentile_walk(h: HdrHistogram, ticks_per_half_distance: int = 5) -> list[tuple[int, float, int]]:
    """``(value ns, percentile, cumulative count)`` at HdrHistogram's percentile ticks, ending at 100%.

    The ticks get denser towards 100% (``ticks_per_half_distance`` per halving
    of 1 - p), as in outputPercentileDistribution(); the last entry is the max
    at 100%. Empty histograms give no points.
    """
    total = h.get_total_count()
    points: list[tuple[int, float, int]] = []
    level = 0.0
    cumulative = 0
    last = 0
    for _low, last, count in nonzero_cells(h):
        cumulative += count
        while 100.0 * cumulative / total >= level:
            points.append((last, level, cumulative))
            level = _next_level(level, ticks_per_half_distance)
            if cumulative == total:
                break
        if cumulative == total:
            break
    if total:
        points.append((last, 100.0, total))
    return points


def percentile_distribution(h: HdrHistogram, unit_ratio: float, ticks_per_half_distance: int = 5) -> str:
    """The ``.hgrm`` text of HdrHistogram's outputPercentileDistribution(), as Java writes it.

    hdrh's own writer walks every sub-bucket in pure Python (seconds per file)
    and prints the standard deviation unscaled; this one walks only non-empty
    slots and follows the Java reference format line for line.
    """
    sig = h.significant_figures
    total = h.get_total_count()
    out = [f"{'Value':>12} {'Percentile':>14} {'TotalCount':>10} {'1/(1-Percentile)':>14}\n\n"]
    *steps, last = percentile_walk(h, ticks_per_half_distance) or [None]
    for value, level, cumulative in steps:
        out.append(f"{value / unit_ratio:12.{sig}f} {level / 100:2.12f} {cumulative:10d} {1 / (1 - level / 100):14.2f}\n")
    if last is not None:
        out.append(f"{last[0] / unit_ratio:12.{sig}f} {1.0:2.12f} {total:10d}\n")
    mean = stddev = 0.0
    if total:
        cells = nonzero_cells(h)
        medians = [((low + high + 1) // 2, count) for low, high, count in cells]
        mean = sum(m * c for m, c in medians) / total
        stddev = math.sqrt(sum((m - mean) ** 2 * c for m, c in medians) / total)
    out.append(f"#[Mean    = {mean / unit_ratio:12.{sig}f}, StdDeviation   = {stddev / unit_ratio:12.{sig}f}]\n")
    out.append(f"#[Max     = {h.get_max_value() / unit_ratio:12.{sig}f}, Total count    = {total:12d}]\n")
    out.append(f"#[Buckets = {h.bucket_count:12d}, SubBuckets     = {h.sub_bucket_count:12d}]\n")
    return "".join(out)


def run_histograms(run_dir: Path, names: tuple[str, ...] | None = None) -> dict[str, HdrHistogram]:
    """The histograms of a run's results directory (``histograms/NAME.hlog``; all, or ``names``), by name."""
    return {path.stem: read_hlog(path) for path in sorted((run_dir / "histograms").glob("*.hlog"))
            if names is None or path.stem in names}


def merged_histograms(run_dirs: list[Path], names: tuple[str, ...] | None = None) -> dict[str, HdrHistogram]:
    """The histograms of several runs (a variant's seeds) added up, by name."""
    merged: dict[str, HdrHistogram] = {}
    for run_dir in run_dirs:
        for name, h in run_histograms(run_dir, names).items():
            if name not in merged:
                merged[name] = new_histogram()
            merged[name].add(h)
    return merged


def histogram_sources(path: Path) -> dict[str, dict[str, HdrHistogram]]:
    """The histograms under ``path``: one source for a run, one per variant (seeds merged) for a comparison."""
    if (path / "compare.json").is_file():
        return {name: merged_histograms(runs) for name, runs in comparison_runs(path).items()}
    if (path / "histograms").is_dir():
        return {str(path): run_histograms(path)}
    raise ConfigError(f"{path}: not a results directory of exitstorm run or compare (no histograms/, no compare.json)")
