"""How the cost of one run grows: with the number of apps, the swapped MB per app and the virtual duration.

Each case is ``exitstorm run configs/camera_launch.toml`` with a few ``--set``
overrides, in a fresh process (so its peak RSS is its own), writing a real
results directory (events.jsonl streamed, trace.json capped). The table
gives wall time, scheduler events, events/s, µs per event, the swapped
pages of the killed apps whose memory came back (the work of their exits,
in pages) per event, and peak RSS. If the cost follows events rather than pages or virtual time,
µs/event stays flat while pages/event and events per virtual second swing.

    python -m benchmarks.scale [--quick]
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

CONFIG = "configs/camera_launch.toml"
#: room for the larger cases: the phone's 12 GB do not hold 100 apps or 1.6 GB per app
BIG_DEVICE = ["device_overrides.memory.total_mb=200000", "device_overrides.memory.zram_disksize_mb=200000"]


def _sized(apps: int, swapped_mb: int, duration_s: float) -> list[str]:
    return [f"apps.count={apps}", f"apps.swapped_mb={{min = {swapped_mb}, max = {swapped_mb}}}",
            f"scenario.duration_s={duration_s}", *BIG_DEVICE]


#: (axis, label, --set overrides); the defaults are 25 apps of 200-500 MB swapped, 6 s
CASES: list[tuple[str, str, list[str]]] = [
    ("apps", "10 apps", _sized(10, 300, 6)),
    ("apps", "30 apps", _sized(30, 300, 6)),
    ("apps", "100 apps", _sized(100, 300, 6)),
    ("swapped MB", "100 MB/app", _sized(25, 100, 30)),
    ("swapped MB", "400 MB/app", _sized(25, 400, 30)),
    ("swapped MB", "1600 MB/app", _sized(25, 1600, 30)),
    ("swapped MB", "1600 MB/app, 2048-PTE chunks", [*_sized(25, 1600, 30), "kernel_overrides.exit.chunk_entries=2048"]),
    ("duration", "1 s", _sized(25, 300, 1)),
    ("duration", "10 s", _sized(25, 300, 10)),
    ("duration", "60 s", _sized(25, 300, 60)),
    ("target", "100 apps, 60 s", _sized(100, 300, 60)),
    # the default scenario for an hour: what grows with virtual time (timelines, histogram intervals, the
    # trace up to its cap) against what does not
    ("long", "1 h", ["scenario.duration_s=3600"]),
    ("long", "1 h, no trace", ["scenario.duration_s=3600", "scenario.trace_max_events=0"]),
]
QUICK = {"10 apps", "100 apps", "100 MB/app", "1600 MB/app", "1 s", "10 s"}


def _case(sets: list[str], out: str, queue: Any) -> None:
    """In a fresh process: run one case and report wall time, summary figures and peak RSS."""
    from actors.kernel.memory import PAGES_PER_MB
    from exitstorm.lab.config import load_experiment
    from exitstorm.runs.experiment import run_experiment

    exp = load_experiment(CONFIG, sets)
    started = time.perf_counter()
    summary = run_experiment(exp, Path(out))
    wall = time.perf_counter() - started
    queue.put({
        "wall_s": wall,
        "events": summary["scheduler"]["events"],
        "kills": summary["kills"],
        # the exit work done: swapped pages of the killed apps whose memory all came back
        "swapped_pages_freed": sum(round(e["swapped_mb"] * PAGES_PER_MB) for e in summary["exits"]
                                   if e["kill_to_freed_ms"] is not None),
        "virtual_s": summary["duration_ms"] / 1000,
        "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "events_jsonl_mb": (Path(out) / "events.jsonl").stat().st_size / 2**20,
        "trace_mb": (Path(out) / "trace.json").stat().st_size / 2**20 if (Path(out) / "trace.json").exists() else 0.0,
        "summary_mb": (Path(out) / "summary.json").stat().st_size / 2**20,
    })


def measure(sets: list[str]) -> dict[str, Any]:
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    with tempfile.TemporaryDirectory() as tmp:
        proc = ctx.Process(target=_case, args=(sets, str(Path(tmp) / "run"), queue))
        proc.start()
        result = queue.get()
        proc.join()
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help=f"only {', '.join(sorted(QUICK))}")
    p.add_argument("--only", metavar="AXIS", help="only the cases of one axis (apps, swapped MB, duration, "
                   "target, long)")
    args = p.parse_args()
    print(f"{CONFIG}, seed 1, one process per case (peak RSS includes the interpreter and imports)\n")
    print("| axis | case | kills | swapped pages freed | virtual s | events | wall s | events/s | µs/event "
          "| pages/event | peak RSS MB | events.jsonl MB | trace.json MB | summary.json MB |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for axis, label, sets in CASES:
        if (args.quick and label not in QUICK) or (args.only and axis != args.only):
            continue
        r = measure(sets)
        print(f"| {axis} | {label} | {r['kills']} | {r['swapped_pages_freed']:,} | {r['virtual_s']:g} | "
              f"{r['events']:,} | {r['wall_s']:.2f} | {r['events'] / r['wall_s']:,.0f} | "
              f"{1e6 * r['wall_s'] / r['events']:.1f} | {r['swapped_pages_freed'] / r['events']:.1f} | "
              f"{r['rss_mb']:.0f} | {r['events_jsonl_mb']:.2f} | {r['trace_mb']:.1f} | {r['summary_mb']:.2f} |",
              flush=True)


if __name__ == "__main__":
    main()
