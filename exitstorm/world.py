"""Assemble a simulated world (runtime, CPU, kernel, actors) from an experiment.

The world also owns the metric recorders that actors report into, so that
the experiment runner only has to run it and read the figures.
"""

from __future__ import annotations

from typing import IO, Any

from actors.cpuload import CpuLoad
from actors.events import EventLog
from actors.kernel import Kernel, Kswapd
from actors.memory import MM, Memory, mb_to_pages
from actors.periodic import PeriodicThread
from actors.process import Process, SimultaneousKill
from actors.runtime import Runtime
from actors.scheduler import CoreSpec, Scheduler, SchedTunables, Thread
from exitstorm.config import Device, Experiment, ThreadSpec
from exitstorm.histograms import LatencyRecorder

NS_PER_US = 1_000
NS_PER_MS = 1_000_000
NS_PER_S = 1_000_000_000


def core_specs(device: Device) -> list[CoreSpec]:
    """Cores numbered cluster by cluster, in the profile's order."""
    return [CoreSpec(c.capacity) for c in device.clusters for _ in range(c.count)]


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
        sc = exp.config
        dev = exp.device
        self.experiment = exp
        self.end_ns = round(sc.scenario.duration_s * NS_PER_S)
        self.interval_ns = max(1, round(sc.scenario.hist_interval_ms * NS_PER_MS))
        self.events = EventLog(events_out, sc.scenario.events)
        self.runtime = Runtime(seed=sc.scenario.seed, end_ns=self.end_ns, events=self.events)
        self.sched_delay: dict[str, LatencyRecorder] = {}
        ks = exp.kernel.sched
        tunables = SchedTunables(ks.base_slice_ns, ks.tunable_scaling, ks.run_to_parity, ks.wakeup_preemption)
        self.scheduler = self.runtime.add(
            Scheduler("scheduler", core_specs(dev), tunables, on_delay=self._on_delay)
        )
        self.memory = Memory(
            mb_to_pages(dev.memory.total_mb), mb_to_pages(dev.memory.kernel_mb),
            dev.memory.watermark_scale_factor, mb_to_pages(dev.memory.zram_disksize_mb), self.scheduler,
        )
        self.kernel = Kernel(self.scheduler, self.memory, exp.kernel.profile, dev.costs)
        all_cpus = list(range(dev.ncpus))
        self.runtime.add(Kswapd("kswapd0", self.kernel, {
            "policy": "fair", "nice": exp.kernel.kswapd.nice, "cpus": all_cpus, "thread_class": "kswapd"}))
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
                    thread_kw=thread_kw(spec.thread, dev),
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
                    thread_kw=thread_kw(group.thread, dev),
                )
            )
        self.processes: list[Process] = []
        self.exit_latency = LatencyRecorder("exit_latency", self.interval_ns)
        self.freed_latency = LatencyRecorder("exit_freed_latency", self.interval_ns)
        if sc.storm is not None:
            self._add_storm(exp)

    def _add_storm(self, exp: Experiment) -> None:
        storm = exp.config.storm
        for i in range(storm.count):
            pid = 1000 + i
            mm = MM(pid, f"victim{i}", storm.compression_ratio)
            self.kernel.add_mm(mm, anon=mb_to_pages(storm.resident_mb), file=mb_to_pages(storm.file_mb),
                               swap=mb_to_pages(storm.swapped_mb))
            proc = Process(f"victim{i}", self.kernel, mm, thread_kw(storm.thread, exp.device))
            proc.watch_exit(self._on_exit)
            self.processes.append(self.runtime.add(proc))
        self.runtime.add(SimultaneousKill("storm", self.processes, round(storm.kill_at_ms * NS_PER_MS)))

    def _on_exit(self, proc: Process) -> None:
        self.exit_latency.record(proc.exited_at, proc.exited_at - proc.killed_at)
        self.freed_latency.record(proc.freed_at, proc.freed_at - proc.killed_at)

    def _on_delay(self, th: Thread, delay_ns: int) -> None:
        rec = self.sched_delay.get(th.thread_class)
        if rec is None:
            rec = self.sched_delay[th.thread_class] = LatencyRecorder(
                f"sched_delay.{th.thread_class}", self.interval_ns
            )
        rec.record(self.runtime.now, delay_ns)
