"""Cost of a whole comparison: wall time, scheduler events per second and peak memory.

Runs ``exitstorm compare`` on a config (every variant, ``--seeds`` seeds,
``--workers`` processes) into a temporary directory and prints the wall time,
the seconds per run, the scheduler events per second over all workers, and
the peak resident set size of the parent and of the largest worker.

    python -m benchmarks.compare [--config configs/camera_launch.toml] [--seeds 20] [--workers K]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import tempfile
import time
from pathlib import Path

from exitstorm.runs.compare import compare


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="configs/camera_launch.toml")
    p.add_argument("--seeds", type=int, default=20)
    p.add_argument("--workers", type=int, default=None, help="worker processes (default: all cores)")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "compare"
        started = time.perf_counter()
        report = compare(args.config, None, args.seeds, out, workers=args.workers)
        wall = time.perf_counter() - started
        events = sum(json.loads(f.read_text())["scheduler"]["events"] for f in out.glob("runs/*/*/summary.json"))
    runs = len(report["variants"]) * len(report["seeds"])
    rss = f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB"
    if min(args.workers or os.cpu_count() or 1, runs) > 1:
        rss += f" parent, {resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024:.0f} MB largest worker"
    print(f"{args.config}: {runs} runs in {wall:.1f} s wall ({wall / runs:.3f} s per run), "
          f"{events / runs:,.0f} events per run, {events / wall:,.0f} events/s; {rss}")


if __name__ == "__main__":
    main()
