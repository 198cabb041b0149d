"""trace.json: a valid Chrome trace-event file with every track a user looks for, capped in size."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from exitstorm.lab.config import load_experiment
from exitstorm.runs.experiment import run_experiment
from exitstorm.runs.trace import us
from tests.conftest import ROOT

CONFIG = str(ROOT / "configs" / "camera_launch.toml")
SHORT = ["scenario.duration_s=2.5"]
EPS_US = 1e-6  # timestamps are µs with ns decimals: sums of two floats may be off in the last bit


def trace_problems(doc: dict[str, Any]) -> list[str]:
    """What breaks the trace-event format: missing fields, negative or unnested durations,
    unmatched async begin/end, timestamps going back on a track."""
    problems = []
    last: dict[tuple[Any, ...], float] = {}
    open_ends: dict[tuple[Any, ...], list[float]] = {}
    begun: dict[tuple[str, str], float] = {}
    for e in doc["traceEvents"]:
        missing = [k for k in ("name", "ph", "pid", "tid") if k not in e]
        if e.get("ph") != "M" and "ts" not in e:
            missing.append("ts")
        if missing:
            problems.append(f"missing {missing}: {e}")
            continue
        if e["ph"] == "M":
            continue
        track = (e["pid"], e["tid"], e["ph"] in "be", e["name"] if e["ph"] == "C" else "")
        if e["ts"] < last.get(track, 0):
            problems.append(f"time goes back on {track}: {e}")
        last[track] = e["ts"]
        if e["ph"] == "X":
            if e["dur"] < 0:
                problems.append(f"negative duration: {e}")
            stack = open_ends.setdefault(track, [])
            while stack and stack[-1] <= e["ts"] + EPS_US:
                stack.pop()
            end = e["ts"] + e["dur"]
            if stack and end > stack[-1] + EPS_US:
                problems.append(f"overlaps its parent without nesting: {e}")
            stack.append(end)
        elif e["ph"] == "b":
            begun[e["cat"], e["id"]] = e["ts"]
        elif e["ph"] == "e":
            start = begun.pop((e["cat"], e["id"]), None)
            if start is None or start > e["ts"]:
                problems.append(f"end without its begin: {e}")
        elif e["ph"] not in "iC":
            problems.append(f"unexpected phase: {e}")
    problems += [f"begin without end: {key}" for key in begun]
    return problems


@pytest.fixture(scope="module")
def camera(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], dict[str, Any]]:
    out = tmp_path_factory.mktemp("trace") / "run"
    summary = run_experiment(load_experiment(CONFIG, SHORT, seed=1), out)
    return json.loads((out / "trace.json").read_text()), summary


def test_trace_is_valid_trace_event_format(camera: tuple[dict[str, Any], dict[str, Any]]) -> None:
    doc, _summary = camera
    assert trace_problems(doc) == []
    assert doc["otherData"]["truncated_at_ms"] is None


def test_trace_has_cores_threads_frames_locks_kills_and_counters(camera: tuple[dict[str, Any], dict[str, Any]]) -> None:
    doc, summary = camera
    events = doc["traceEvents"]
    names = {(e["pid"], e["tid"]): e["args"]["name"] for e in events if e["name"] == "thread_name"}
    procs = {e["pid"]: e["args"]["name"] for e in events if e["name"] == "process_name"}
    assert [names[0, c] for c in range(8)] == [f"CPU {c}" for c in range(8)]
    assert {"CPUs", "memory", "camera", "exiting", "lmkd", "kswapd"} <= set(procs.values())
    cpu_slices = [e for e in events if e["ph"] == "X" and e["pid"] == 0]
    preview = summary["config_echo"]["camera"]["preview"]["thread"]
    assert {e["args"]["sched"] for e in cpu_slices if e["name"] == "preview"} == {f"nice {preview['nice']}"}
    lmkd = summary["config_echo"]["lmkd"]["main_thread"]
    assert {e["args"]["sched"] for e in cpu_slices if e["name"] == "lmkd"} == {f"fifo {lmkd['prio']}"}
    # every CPU slice has its twin on the thread's own track
    running = sorted((e["ts"], e["dur"]) for e in events if e["name"] == "running")
    assert running == sorted((e["ts"], e["dur"]) for e in cpu_slices)
    waits = [e for e in events if e.get("cat") == "lock"]
    assert {e["args"]["lock"] for e in waits} >= {"zs_pool->lock"}
    frames = [e for e in events if e["ph"] == "b" and e["name"].startswith("preview frame")]
    assert len(frames) == summary["frames"]
    preview_track = next(key for key, name in names.items() if name == "preview")
    assert {(e["pid"], e["tid"]) for e in frames} == {preview_track} and procs[preview_track[0]] == "camera"
    assert sum(e["args"]["janky"] for e in frames) == summary["janky_frames"]
    assert all(e["name"].endswith("janky") == e["args"]["janky"] for e in frames)
    kills = [e for e in events if e["ph"] == "i" and e["name"].startswith("kill ")]
    assert [e["ts"] for e in kills] == [float(us(round(k["t_kill_ms"] * 1e6))) for k in summary["kill_log"]]
    exits = [e for e in events if e["ph"] == "i" and e["name"].startswith("exit ")]
    assert len(exits) == summary["kills"] - summary["exiting_at_end"]
    counters = {e["name"] for e in events if e["ph"] == "C"}
    assert counters == {"free memory", "ZRAM pool", "PSI memory", *(f"util CPU {c}" for c in range(8))}
    free = [e["args"]["MB"] for e in events if e["name"] == "free memory"]
    assert free == summary["free_memory_mb"]["mb"][: len(free)]
    # each core's PELT utilization: its summary timeline, capped by the core's capacity (little 0-3, prime 7)
    util = [[e["args"]["util"] for e in events if e["name"] == f"util CPU {c}"] for c in range(8)]
    assert util == [u[: len(util[0])] for u in summary["cpu_util"]["by_cpu"]]
    assert min(map(min, util)) >= 0 and max(util[0]) < max(util[4]) < max(util[7]) <= 1024


def test_cpu_slices_add_up_to_the_cpu_time_accounted(camera: tuple[dict[str, Any], dict[str, Any]]) -> None:
    doc, summary = camera
    busy_us = sum(e["dur"] for e in doc["traceEvents"] if e["ph"] == "X" and e["pid"] == 0)
    cpu = summary["cpu_time_ns"]
    assert busy_us == pytest.approx((cpu["run"] + cpu["spin"]) / 1000, rel=1e-9)


def test_a_capped_trace_stops_at_the_cap_and_stays_valid(tmp_path: Path) -> None:
    out = tmp_path / "capped"
    run_experiment(load_experiment(CONFIG, [*SHORT, "scenario.trace_max_events=3000"], seed=1), out)
    doc = json.loads((out / "trace.json").read_text())
    assert trace_problems(doc) == []
    cut_ms = doc["otherData"]["truncated_at_ms"]
    assert cut_ms is not None and 0 < cut_ms < 2500
    recorded = [e for e in doc["traceEvents"] if (e["ph"] == "X" and e["pid"] == 0) or e.get("cat") == "lock"
                or e["ph"] == "e"]  # one per record: CPU slices, lock waits, frames
    assert len(recorded) <= 3000
    assert max(e["ts"] + e.get("dur", 0) for e in doc["traceEvents"] if "ts" in e) <= cut_ms * 1000 + EPS_US


def test_no_trace_when_the_cap_is_zero(tmp_path: Path) -> None:
    out = tmp_path / "off"
    run_experiment(load_experiment(CONFIG, ["scenario.duration_s=0.3", "scenario.trace_max_events=0"]), out)
    assert not (out / "trace.json").exists()
    assert (out / "summary.json").exists()


@pytest.mark.parametrize("by", ["thread_class", "process"])
def test_folded_profile_split_by_class_or_process_keeps_every_ns(tmp_path: Path, by: str) -> None:
    def folded(setting: list[str]) -> dict[str, int]:
        out = tmp_path / f"p{len(setting)}{by}"
        run_experiment(load_experiment(CONFIG, ["scenario.duration_s=0.8", *setting], seed=1), out)
        lines = (out / "profile.folded").read_text().splitlines()
        return {stack: int(ns) for stack, ns in (line.rsplit(" ", 1) for line in lines)}

    plain = folded([])
    split = folded([f'scenario.profile_by="{by}"'])
    assert sum(split.values()) == sum(plain.values())
    roots = {stack.split(";")[0] for stack in split}
    if by == "thread_class":
        assert {"camera", "kswapd", "system_load"} <= roots
    else:
        assert {"kswapd0", "lmkd", "camera"} <= roots
    # under each root, the stacks are the plain profile's stacks
    merged: dict[str, int] = {}
    for stack, ns in split.items():
        rest = stack.split(";", 1)[1] if ";" in stack else None
        if rest is not None:
            merged[rest] = merged.get(rest, 0) + ns
    assert all(stack in plain for stack in merged)
