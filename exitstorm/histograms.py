"""Latency recording into HdrHistograms, written as the standard HDR files.

Each recorder keeps a whole-run histogram and one histogram per interval of
virtual time, so that ``NAME.hlog`` is a genuine HdrHistogram interval log
(readable by HistogramLogProcessor, HdrHistogram's plotter, hdrh's reader) and
``NAME.hgrm`` is the usual percentile distribution. Values are ns; files show
ms (value unit ratio 1e6), as HdrHistogram's tools expect.
"""

from __future__ import annotations

import io
from pathlib import Path

from hdrh.histogram import HdrHistogram
from hdrh.log import HistogramLogWriter

#: Histogram range and precision: 1 µs .. 1 hour, 3 significant digits.
LOWEST_NS = 1_000
HIGHEST_NS = 3_600_000_000_000
SIGNIFICANT_FIGURES = 3
NS_PER_MS = 1_000_000


def _new() -> HdrHistogram:
    return HdrHistogram(LOWEST_NS, HIGHEST_NS, SIGNIFICANT_FIGURES)


class LatencyRecorder:
    """Records ``(t_ns, value_ns)`` samples; clamps values into the histogram's range."""

    def __init__(self, name: str, interval_ns: int) -> None:
        if interval_ns <= 0:
            raise ValueError("interval must be positive")
        self.name = name
        self.interval_ns = interval_ns
        self.total = _new()
        self._intervals: dict[int, HdrHistogram] = {}
        self.clamped = 0

    def record(self, t_ns: int, value_ns: int) -> None:
        if value_ns > HIGHEST_NS:
            value_ns = HIGHEST_NS
            self.clamped += 1
        elif value_ns < 0:
            value_ns = 0
        self.total.record_value(value_ns)
        k = t_ns // self.interval_ns
        interval = self._intervals.get(k)
        if interval is None:
            interval = self._intervals[k] = _new()
        interval.record_value(value_ns)

    @property
    def count(self) -> int:
        return self.total.get_total_count()

    def percentiles_ms(self) -> dict[str, float | int]:
        """p50/p90/p99/max in ms (3 decimals) and the sample count."""
        h = self.total
        if not h.get_total_count():
            return {"count": 0}
        top = h.get_max_value()
        figures: dict[str, float | int] = {
            # a percentile is reported as its bucket's highest equivalent value, never above the max
            f"p{p}": round(min(h.get_value_at_percentile(p), top) / NS_PER_MS, 3)
            for p in (50, 90, 99)
        }
        figures["max"] = round(top / NS_PER_MS, 3)
        figures["count"] = h.get_total_count()
        return figures

    def write(self, directory: Path, end_ns: int) -> None:
        """Write ``NAME.hlog`` (interval log, virtual seconds from 0) and ``NAME.hgrm``."""
        directory.mkdir(parents=True, exist_ok=True)
        with (directory / f"{self.name}.hlog").open("w") as fh:
            writer = HistogramLogWriter(fh)
            writer.output_comment(f"[exitstorm {self.name}: values in ns, timestamps in virtual seconds]")
            writer.output_log_format_version()
            writer.output_base_time(0)
            writer.output_legend()
            for k in sorted(self._intervals):
                h = self._intervals[k]
                start = k * self.interval_ns
                end = min(start + self.interval_ns, max(end_ns, start + 1))
                writer.log.write(
                    "%.3f,%.3f,%.3f,%s\n"
                    % (start / 1e9, (end - start) / 1e9, h.get_max_value() / NS_PER_MS, h.encode().decode())
                )
        buf = io.BytesIO()
        self.total.output_percentile_distribution(buf, NS_PER_MS)
        (directory / f"{self.name}.hgrm").write_bytes(buf.getvalue())
