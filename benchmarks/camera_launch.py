"""Cost of one camera cold-launch run: wall time of the simulation and events per second.

Runs the scenario's seeds in this process (no results written), so the
figures are the simulation alone; ``exitstorm compare`` adds writing each
run's directory and runs on all cores.

    python -m benchmarks.camera_launch [--config configs/camera_launch.toml] [--seeds 6] [--set key=value ...]
"""

from __future__ import annotations

import argparse
import io
import statistics
import time

import trio

from exitstorm.lab.config import load_experiment
from exitstorm.lab.world import World


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="configs/camera_launch.toml")
    p.add_argument("--seeds", type=int, default=6)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = p.parse_args()
    base = load_experiment(args.config, args.set)
    first = base.config.scenario.seed
    walls, events = [], []
    for seed in range(first, first + args.seeds):
        world = World(base.with_seed(seed), io.StringIO())
        started = time.perf_counter()
        trio.run(world.runtime.run)
        walls.append(time.perf_counter() - started)
        events.append(world.runtime.events_processed)
        print(f"seed {seed}: {walls[-1]:.3f} s wall, {events[-1]} events")
    print(f"{args.config}: {statistics.fmean(walls):.3f} s per run (min {min(walls):.3f}), "
          f"{statistics.fmean(events):,.0f} events per run, {sum(events) / sum(walls):,.0f} events/s")


if __name__ == "__main__":
    main()
