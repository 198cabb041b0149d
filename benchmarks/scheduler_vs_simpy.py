"""exitstorm's CPU scheduler against SimPy on the same fixed-priority workload.

The workload: ``threads`` SCHED_FIFO threads on ``cores`` equal cores, each
alternating ``bursts`` CPU bursts and sleeps (exponential lengths, random
start offsets, four priority levels). SimPy expresses the same semantics with
a ``PreemptiveResource`` of capacity ``cores``: a higher priority request
preempts the lowest-priority, most recent user; a preempted thread re-queues
with its original request time, i.e. at the head of its priority level, as
POSIX SCHED_FIFO and exitstorm do. Both must give the same completion time
for every thread; the last line prints the wall-clock ratio.

    python -m benchmarks.scheduler_vs_simpy [--threads 64] [--bursts 200] [--cores 8]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from typing import Any

import simpy
import simpy.resources.resource as simpy_resource
import trio

from actors.cpu.scheduler import CoreSpec, SchedTunables, Scheduler
from actors.cpu.work import Compute, Sleep
from actors.runtime.actor import Actor, Runtime

PRIORITIES = (10, 20, 30, 40)
#: Fair-class tunables are irrelevant here (every thread is SCHED_FIFO) but required.
TUNABLES = SchedTunables(base_slice_ns=750_000, tunable_scaling="log", run_to_parity=True, wakeup_preemption=True)


def make_workload(threads: int, bursts: int, seed: int) -> list[dict[str, Any]]:
    """Per thread: priority, start offset, burst and sleep lengths (ns, integers)."""
    rng = random.Random(seed)
    work = []
    for i in range(threads):
        work.append(
            {
                "prio": PRIORITIES[i % len(PRIORITIES)],
                "start": rng.randrange(1, 1_000_000),
                "bursts": [1 + round(rng.expovariate(1 / 400_000)) for _ in range(bursts)],
                "sleeps": [1 + round(rng.expovariate(1 / 2_400_000)) for _ in range(bursts - 1)],
            }
        )
    return work


def run_exitstorm(work: list[dict[str, Any]], cores: int) -> tuple[list[int], int, int]:
    rt = Runtime(seed=0)
    sched = rt.add(Scheduler("scheduler", [CoreSpec(1.0)] * cores, TUNABLES))
    done = [0] * len(work)

    def program(w: dict[str, Any]) -> Any:
        yield Sleep(w["start"])
        sleeps = w["sleeps"]
        for k, burst in enumerate(w["bursts"]):
            yield Compute(burst)
            if k < len(sleeps):
                yield Sleep(sleeps[k])

    class Workload(Actor):
        passive = True

        def on_start(self) -> None:
            for i, w in enumerate(work):
                th = sched.spawn(f"t{i}", self, "fifo", prio=w["prio"])
                sched.submit(th, program(w), lambda r, i=i: done.__setitem__(i, r.t_ns))

    rt.add(Workload("workload"))
    trio.run(rt.run)
    preemptions = sum(th.preemptions for th in sched.threads)
    return done, rt.events_processed, preemptions


class _HeadOfLevelRequest(simpy_resource.PriorityRequest):
    """A preemptive request that keeps its original request time across preemptions."""

    def __init__(self, resource: Any, priority: int, since: int) -> None:
        self.priority = priority
        self.preempt = True
        self.time = since
        self.key = (priority, since, False)
        simpy_resource.Request.__init__(self, resource)


def run_simpy(work: list[dict[str, Any]], cores: int) -> list[int]:
    env = simpy.Environment()
    cpu = simpy.PreemptiveResource(env, capacity=cores)
    done = [0] * len(work)

    def thread(i: int, w: dict[str, Any]) -> Any:
        yield env.timeout(w["start"])
        prio = -w["prio"]
        sleeps = w["sleeps"]
        for k, burst in enumerate(w["bursts"]):
            remaining = burst
            since = env.now
            while remaining:
                with _HeadOfLevelRequest(cpu, prio, since) as req:
                    yield req
                    began = env.now
                    try:
                        yield env.timeout(remaining)
                        remaining = 0
                    except simpy.Interrupt:
                        remaining -= env.now - began
            if k < len(sleeps):
                yield env.timeout(sleeps[k])
        done[i] = env.now

    for i, w in enumerate(work):
        env.process(thread(i, w))
    env.run()
    return done


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=64)
    p.add_argument("--bursts", type=int, default=200)
    p.add_argument("--cores", type=int, default=8)
    p.add_argument("--repeat", type=int, default=5, help="best-of-N wall time for each engine")
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args(argv)
    work = make_workload(args.threads, args.bursts, args.seed)
    total_bursts = args.threads * args.bursts

    es_times, simpy_times = [], []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        es_done, events, preemptions = run_exitstorm(work, args.cores)
        es_times.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        simpy_done = run_simpy(work, args.cores)
        simpy_times.append(time.perf_counter() - t0)

    mismatches = sum(a != b for a, b in zip(es_done, simpy_done))
    es_wall, simpy_wall = min(es_times), min(simpy_times)
    print(f"workload: {args.threads} SCHED_FIFO threads x {args.bursts} bursts on {args.cores} cores "
          f"(best of {args.repeat}; medians {statistics.median(es_times):.3f} s / {statistics.median(simpy_times):.3f} s)")
    print(f"completion times: {len(work) - mismatches}/{len(work)} threads identical in both engines "
          f"({preemptions} preemptions)")
    print(f"exitstorm: {es_wall:.3f} s wall, {total_bursts / es_wall:,.0f} bursts/s, "
          f"{events / es_wall:,.0f} scheduler events/s ({events} events)")
    print(f"simpy:     {simpy_wall:.3f} s wall, {total_bursts / simpy_wall:,.0f} bursts/s")
    print(f"ratio exitstorm/simpy wall = {es_wall / simpy_wall:.2f}")
    return 1 if mismatches else 0


if __name__ == "__main__":
    sys.exit(main())
