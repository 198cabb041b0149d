"""HDR outputs: percentiles and the .hgrm text follow HdrHistogram's reference semantics."""

from __future__ import annotations

from pathlib import Path

import pytest
from hdrh.histogram import HdrHistogram
from hdrh.log import HistogramLogReader
from hypothesis import given, strategies as st

from exitstorm.outputs.histograms import (HIGHEST_NS, LOWEST_NS, LatencyRecorder, hdr_percentiles_ms, new_histogram,
    nonzero_cells, percentile_distribution, read_hlog, record_counts)

MS = 1_000_000


def test_hgrm_ticks_follow_the_java_reference_levels() -> None:
    h = HdrHistogram(LOWEST_NS, HIGHEST_NS, 3)
    for v in (1 * MS, 1 * MS, 1 * MS, 2 * MS):
        h.record_value(v)
    text = percentile_distribution(h, MS)
    rows = [line.split() for line in text.splitlines()[2:] if line and not line.startswith("#")]
    levels = [float(r[1]) for r in rows]
    assert levels == [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.775, 1.0]
    assert [int(r[2]) for r in rows] == [3] * 11 + [4, 4]
    assert all(abs(float(r[0]) - 1.0) < 0.001 for r in rows[:11])
    assert abs(float(rows[-1][0]) - 2.0) < 0.002
    mean_line, max_line, buckets_line = text.splitlines()[-3:]
    mean, std = (float(x.split("=")[1]) for x in mean_line.strip("#[]").split(","))
    assert abs(mean - 1.25) < 0.002 and abs(std - 0.433) < 0.002
    assert max_line.endswith("Total count    =            4]")


@given(st.dictionaries(st.integers(0, HIGHEST_NS), st.integers(1, 1000), min_size=1, max_size=40))
def test_inlined_index_arithmetic_is_hdrhs(values: dict[int, int]) -> None:
    ours, theirs = HdrHistogram(LOWEST_NS, HIGHEST_NS, 3), HdrHistogram(LOWEST_NS, HIGHEST_NS, 3)
    record_counts(ours, values)
    for value, count in values.items():
        theirs.record_value(value, count)
    assert ours.encode() == theirs.encode()
    assert (ours.get_total_count(), ours.get_min_value(), ours.get_max_value()) == (
        theirs.get_total_count(), theirs.get_min_value(), theirs.get_max_value())
    cells = nonzero_cells(ours)
    assert [count for _, _, count in cells] == [c for c in (theirs.get_count_at_index(i)
                                                            for i in range(theirs.counts_len)) if c]
    for low, high, _count in cells:
        assert (theirs.get_lowest_equivalent_value(low), theirs.get_highest_equivalent_value(low)) == (low, high)


def test_recorder_percentiles_clamp_to_max_and_intervals_sum_to_total(tmp_path: Path) -> None:
    rec = LatencyRecorder("exit_latency", interval_ns=100 * MS)
    rec.record(5, 0)
    for i in range(1, 301):
        rec.record(i * MS, i * 10_000)  # 10 µs .. 3 ms, spread over 3 intervals
    figures = rec.percentiles_ms()
    assert figures["count"] == 301
    assert figures["p50"] <= figures["p90"] <= figures["p99"] <= figures["max"]
    assert abs(figures["max"] - 3.0) < 0.003 and abs(figures["p50"] - 1.5) < 0.01
    rec.write(tmp_path, end_ns=301 * MS)
    reader = HistogramLogReader(str(tmp_path / "exit_latency.hlog"), HdrHistogram(LOWEST_NS, HIGHEST_NS, 3))
    counts = []
    while (h := reader.get_next_interval_histogram()) is not None:
        counts.append(h.get_total_count())
    assert counts == [100, 100, 100, 1]
    assert (tmp_path / "exit_latency.hgrm").read_text().startswith("       Value     Percentile")


def test_a_recorder_holds_one_interval_of_samples_and_writes_what_one_whole_histogram_would(tmp_path: Path) -> None:
    streamed = LatencyRecorder("x", interval_ns=10 * MS)
    values = [(t * MS // 4, (t * 7919) % 50_000_000) for t in range(4000)]  # 100 intervals of 40 samples
    held = []
    for t, v in values:
        streamed.record(t, v)
        held.append(streamed.samples_held)
    assert max(held) == 40 and streamed.count == 4000
    whole = new_histogram()
    for _t, v in values:
        whole.record_value(max(v, 0) >> streamed.total.unit_magnitude << streamed.total.unit_magnitude)
    assert hdr_percentiles_ms(streamed.total) == hdr_percentiles_ms(whole)
    streamed.write(tmp_path, end_ns=1000 * MS)
    assert read_hlog(tmp_path / "x.hlog").get_total_count() == 4000
    assert hdr_percentiles_ms(read_hlog(tmp_path / "x.hlog")) == hdr_percentiles_ms(whole)
    with pytest.raises(ValueError, match="time order"):
        streamed.record(5 * MS, 1)
