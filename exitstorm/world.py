"""Assemble a simulated world (runtime, CPU scheduler, actors) from an experiment.

The world also owns the metric recorders that actors report into, so that
the experiment runner only has to run it and read the figures.
"""

from __future__ import annotations

from typing import IO, Any

from actors.cpuload import CpuLoad
from actors.events import EventLog
from actors.periodic import PeriodicThread
from actors.runtime import Runtime
from actors.scheduler import CoreSpec, Scheduler, SchedTunables, Thread
from exitstorm.config import Device, Experiment, ThreadSpec
from exitstorm.histograms import LatencyRecorder

NS_PER_US = 1_000
NS_PER_MS = 1_000_000


def core_specs(device: Device) -> list[CoreSpec]:
    """Cores numbered cluster by cluster, in the profile's order."""
    return [CoreSpec(c.capacity, c.name) for c in device.clusters for _ in range(c.count)]


def thread_kw(spec: ThreadSpec, device: Device) -> dict[str, Any]:
    return {
        "policy": spec.policy,
        "prio": spec.prio,
        "nice": spec.nice,
        "cpus": device.cpusets[spec.cpuset],
        "thread_class": spec.thread_class,
    }


class FrameStats:
    """Per periodic thread: lateness and response-time histograms, janky count."""

    def __init__(self, name: str, period_ns: int, interval_ns: int, log: Any) -> None:
        self.name = name
        self.period_ns = period_ns
        self.lateness = LatencyRecorder(f"frame_lateness.{name}", interval_ns)
        self.response = LatencyRecorder(f"frame_response.{name}", interval_ns)
        self.janky = 0
        self._log = log

    def on_frame(self, k: int, release_ns: int, done_ns: int) -> None:
        deadline = release_ns + self.period_ns
        late = max(0, done_ns - deadline)
        janky = done_ns > deadline
        self.janky += janky
        self.lateness.record(done_ns, late)
        self.response.record(done_ns, done_ns - release_ns)
        self._log("metric", done_ns, self.name, "frame", k=k, release_ns=release_ns, lateness_ns=late, janky=janky)


class World:
    def __init__(self, exp: Experiment, events_out: IO[str] | None) -> None:
        sc = exp.scenario
        self.experiment = exp
        self.end_ns = round(sc.run.duration_ms * NS_PER_MS)
        self.interval_ns = max(1, round(sc.run.hist_interval_ms * NS_PER_MS))
        self.events = EventLog(events_out, sc.run.events)
        self.runtime = Runtime(seed=sc.run.seed, end_ns=self.end_ns, events=self.events)
        self.sched_delay: dict[str, LatencyRecorder] = {}
        tunables = SchedTunables(
            base_slice_ns=sc.sched.base_slice_ns,
            tunable_scaling=sc.sched.tunable_scaling,
            run_to_parity=sc.sched.run_to_parity,
            wakeup_preemption=sc.sched.wakeup_preemption,
        )
        self.scheduler = self.runtime.add(
            Scheduler("scheduler", core_specs(exp.device), tunables, on_delay=self._on_delay)
        )
        self.frames: dict[str, FrameStats] = {}
        for spec in sc.periodic:
            stats = self.frames[spec.name] = FrameStats(
                spec.name, round(spec.period_us * NS_PER_US), self.interval_ns, self.events.emit
            )
            self.runtime.add(
                PeriodicThread(
                    spec.name,
                    self.scheduler,
                    period_ns=stats.period_ns,
                    budget_ns=round(spec.budget_us * NS_PER_US),
                    start_ns=round(spec.start_ms * NS_PER_MS),
                    thread_kw=thread_kw(spec.thread, exp.device),
                    on_frame=stats.on_frame,
                )
            )
        for group in sc.load:
            self.runtime.add(
                CpuLoad(
                    group.name,
                    self.scheduler,
                    count=group.count,
                    burst_mean_ns=round(group.burst_mean_us * NS_PER_US),
                    sleep_mean_ns=round(group.sleep_mean_us * NS_PER_US),
                    thread_kw=thread_kw(group.thread, exp.device),
                )
            )

    def _on_delay(self, th: Thread, delay_ns: int) -> None:
        rec = self.sched_delay.get(th.thread_class)
        if rec is None:
            rec = self.sched_delay[th.thread_class] = LatencyRecorder(
                f"sched_delay.{th.thread_class}", self.interval_ns
            )
        rec.record(self.runtime.now, delay_ns)
