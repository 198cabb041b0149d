"""Assemble a simulated world (runtime, CPU, kernel, actors) from an experiment.

The world also owns the metric recorders that actors report into, so that
the experiment runner only has to run it and read the figures.
"""

from __future__ import annotations

import random
from typing import IO, Any, NamedTuple

from actors.android.camera import CameraLaunch
from actors.android.lmkd import Lmkd, LmkdReaper
from actors.android.periodic import PeriodicThread
from actors.cpu.scheduler import CoreSpec, SchedTunables, Thread
from actors.cpu.timeline import Timeline
from actors.device import add_oom_killer, build_device
from actors.harness.pool_poller import PoolPoller
from actors.harness.storm import KillSender, MreleaseReapers, SimultaneousKill
from actors.kernel.kernel import CGROUP_MUTEX
from actors.kernel.memory import MM, PAGES_PER_MB, mb_to_pages, zram_pages
from actors.kernel.process import Process
from actors.kernel.psi_monitor import PsiMonitor, PsiTrigger
from actors.load.cgroup import CgroupMigrations
from actors.load.cpuload import CpuLoad, bursts
from actors.runtime.actor import Runtime, stream_seed
from actors.runtime.events import EventLog
from actors.runtime.quantities import NS_PER_MS, NS_PER_S
from actors.runtime.sampler import Sampler
from exitstorm.lab.config import (AppBandConfig, AppsConfig, DeviceConfig, Experiment, SystemMemoryConfig,
    ThreadConfig, UniformConfig)
from exitstorm.outputs.histograms import LatencyRecorder
from policies.kill import KILL
from policies.reap import REAP
from policies.swap_release import SWAP_RELEASE

#: pid ranges by kind of process, so that pids say what a process is
SYSTEM_PID, STORM_PID, APP_PID, CAMERA_PID = 100, 1000, 2000, 5000


def band_sizes(count: int, bands: list[AppBandConfig]) -> list[int]:
    """Apps per band, proportional to the shares (largest remainder; ties to the earlier band)."""
    total = sum(b.share for b in bands)
    exact = [count * b.share / total for b in bands]
    sizes = [int(x) for x in exact]
    order = sorted(range(len(bands)), key=lambda i: (-(exact[i] - sizes[i]), i))
    for i in order[: count - sum(sizes)]:
        sizes[i] += 1
    return sizes


def spread_adj(band: AppBandConfig, n: int) -> list[int]:
    """Adj values of a band's ``n`` apps, least recently used (highest adj) first."""
    if n == 1:
        return [band.adj_max]
    span = band.adj_max - band.adj_min
    return [band.adj_max - span * j // (n - 1) for j in range(n)]


def draw_mb(rng: random.Random, dist: UniformConfig) -> float:
    return dist.min if dist.max == dist.min else rng.uniform(dist.min, dist.max)


def core_specs(device: DeviceConfig) -> list[CoreSpec]:
    """Cores numbered cluster by cluster, in the profile's order."""
    return [CoreSpec(c.capacity, i, c.idle_state_table()) for i, c in enumerate(device.clusters)
            for _ in range(c.count)]


def thread_kw(spec: ThreadConfig, device: DeviceConfig) -> dict[str, Any]:
    return {
        "policy": spec.policy,
        "prio": spec.prio,
        "nice": spec.nice,
        "cpus": device.cpusets[spec.cpuset],
        "group": device.cpu_group(spec.cpuset),
        "thread_class": spec.thread_class,
    }


class MemorySample(NamedTuple):
    """Free pages, ZRAM pool pages and cumulative PSI memory stall times at one instant."""

    free: int
    zpool: int
    psi_some_ns: int
    psi_full_ns: int


def window_stats(samples: list[tuple[int, int]], lo: int, hi: int) -> tuple[float, int] | None:
    """Mean and minimum of the sampled values at ``lo`` <= t <= ``hi`` (None if no sample falls there)."""
    inside = [v for t, v in samples if lo <= t <= hi]
    if not inside:
        return None
    return sum(inside) / len(inside), min(inside)


def slow_exits(spans: list[tuple[int, int | None]], end_ns: int, limit_ns: int) -> tuple[int, float | None]:
    """Of ``(killed_at, exited_at or None)``: how many exits took longer than ``limit_ns`` (those still
    exiting at ``end_ns`` after more than it included), and the mean ns of the finished ones among them."""
    finished = [ex - k for k, ex in spans if ex is not None and ex - k > limit_ns]
    unfinished = sum(1 for k, ex in spans if ex is None and end_ns - k > limit_ns)
    return len(finished) + unfinished, (sum(finished) / len(finished) if finished else None)


def exit_share(before: dict[str, int], after: dict[str, int], capacity_ns: int, classes: list[str]) -> float:
    """The share of ``capacity_ns`` (cores x window) that ``classes`` took between two cumulative CPU counts."""
    share = 0.0
    for cls in classes:
        share += (after.get(cls, 0) - before.get(cls, 0)) / capacity_ns
    return share


class FrameStats:
    """Per periodic thread: lateness and response-time histograms, janky count."""

    def __init__(self, name: str, period_ns: int, interval_ns: int, log: Any,
                 timeline: Timeline | None = None) -> None:
        self.name = name
        self.period_ns = period_ns
        self.lateness = LatencyRecorder(f"frame_lateness.{name}", interval_ns)
        self.response = LatencyRecorder(f"frame_response.{name}", interval_ns)
        self.janky = 0
        self.first_janky: int | None = None
        self._log = log
        self._timeline = timeline if timeline is not None else Timeline(0)

    def on_frame(self, k: int, release_ns: int, done_ns: int) -> None:
        deadline = release_ns + self.period_ns
        late = max(0, done_ns - deadline)
        janky = done_ns > deadline
        if janky:
            self.janky += 1
            if self.first_janky is None:
                self.first_janky = k
        self.lateness.record(done_ns, late)
        self.response.record(done_ns, done_ns - release_ns)
        self._log("metric", done_ns, self.name, "frame", k=k, release_ns=release_ns, lateness_ns=late, janky=janky)
        if self._timeline.on:
            self._timeline.add_frame(self.name, k, release_ns, done_ns, late, janky)


class World:
    def __init__(self, exp: Experiment, events_out: IO[str] | None) -> None:
        sc = exp.config
        dev = exp.device
        self.experiment = exp
        self.end_ns = sc.scenario.duration_ns
        self.interval_ns = sc.scenario.hist_interval_ns
        self.events = EventLog(events_out, sc.scenario.events)
        self.runtime = Runtime(seed=sc.scenario.seed, end_ns=self.end_ns, events=self.events)
        self.sched_delay: dict[str, LatencyRecorder] = {}
        self.timeline = Timeline(sc.scenario.trace_max_events)
        ks = exp.kernel.sched
        build = dev.build
        hz = build.hz if build.hz is not None else ks.hz
        tunables = SchedTunables(ks.base_slice_ns, ks.tunable_scaling, ks.run_to_parity, ks.wakeup_preemption,
                                 preempt=build.preempt if build.preempt is not None else ks.preempt,
                                 tick_ns=NS_PER_S // hz,
                                 balance_ns_per_cpu=round(ks.balance_ms_per_cpu * NS_PER_MS),
                                 busy_factor=ks.busy_factor, energy_aware=dev.energy_aware, tick_irq_min_ns=dev.tick_interrupt.min_ns,
                                 tick_irq_max_ns=dev.tick_interrupt.max_ns)
        device = build_device(
            self.runtime, core_specs(dev), tunables, total_pages=mb_to_pages(dev.memory.total_mb),
            kernel_pages=mb_to_pages(dev.memory.kernel_mb), watermark_scale_factor=dev.memory.watermark_scale_factor,
            zram_pages=mb_to_pages(dev.memory.zram_disksize_mb), profile=exp.kernel.profile, costs=dev.costs,
            kswapd_thread={"policy": "fair", "nice": exp.kernel.kswapd.nice, "cpus": dev.kswapd_cpus},
            wq_unbound_cpumask=dev.wq_unbound_cpumask, oom_reaper_cpus=dev.oom_reaper_cpus, timeline=self.timeline)
        self.scheduler, self.memory, self.kernel = device.scheduler, device.memory, device.kernel
        self.scheduler.delayed.connect(self._on_delay)
        if sc.scenario.random_phases:
            self.scheduler.draw_phases()
        else:
            self.scheduler.start_tick_interrupts()
        self.frames: dict[str, FrameStats] = {}
        for spec in sc.periodic:
            stats = self.frames[spec.name] = FrameStats(
                spec.name, spec.period_ns, self.interval_ns, self.events.emit, self.timeline
            )
            self.runtime.add(
                PeriodicThread(
                    spec.name,
                    self.scheduler,
                    period_ns=stats.period_ns,
                    budget_ns=spec.budget_ns,
                    start_ns=spec.start_ns,
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
                    burst_mean_ns=group.burst_mean_ns,
                    sleep_mean_ns=group.sleep_mean_ns,
                    thread_kw=thread_kw(group.thread, dev),
                )
            )
        self.processes: list[Process] = []
        self.exit_latency = LatencyRecorder("exit_latency", self.interval_ns)
        self.freed_latency = LatencyRecorder("exit_freed_latency", self.interval_ns)
        self.direct_reclaim = LatencyRecorder("direct_reclaim", self.interval_ns)
        self.memory.reclaim_stalled.connect(lambda _cls, ns: self.direct_reclaim.record(self.runtime.now, ns))
        #: CPU busy by class at the first kill, and at the latest exit or memory return of a killed process
        self.storm_start: tuple[int, dict[str, int]] | None = None
        self.storm_last_exit: tuple[int, dict[str, int]] | None = None
        #: pid → (lmkd's or the OOM killer's kill reason, min adj, the thread that sends the SIGKILL, when decided)
        self.kill_reasons: dict[int, tuple[str, int, str, int]] = {}
        self.camera: CameraLaunch | None = None
        self.pool_poller: PoolPoller | None = None
        self.preview_start: tuple[int, int] | None = None  # (t_ns, free pages)
        points = sc.scenario.timeline_max_points
        self.sampler = self.runtime.add(Sampler("sampler", sc.scenario.sample_ns,
                                                self._memory_sample, points))
        #: the exit work classes, and the largest share of the cores they took in one cpu window: (share, t_ns)
        self.exit_classes = sorted(sc.exit_work_classes())
        self.exit_peak: tuple[float, int | None] = (0.0, None)
        #: the largest capacity-weighted share of all the cores that was busy in one cpu window: (share, t_ns)
        self.load_peak: tuple[float, int | None] = (0.0, None)
        self._cpu_last: tuple[int, dict[str, int]] | None = None
        self._load_last = 0
        self.cpu_sampler = self.runtime.add(Sampler(
            "cpu_sampler", sc.scenario.cpu_window_ns, self.scheduler.busy_by_class,
            points, on_sample=self.cpu_window))
        #: each core's PELT utilization, at the free-memory timeline's resolution
        self.util_sampler = self.runtime.add(Sampler("util_sampler", sc.scenario.sample_ns,
                                                     self.scheduler.cores_util, points))
        if sc.storm is not None:
            self._add_storm(exp)
        if sc.apps is not None:
            self._add_apps(sc.apps, dev)
        if sc.camera is not None:
            self._add_camera(exp)
        if sc.system is not None:
            self._add_system(sc.system)
        pol = sc.policies
        swap_release = pol.build(SWAP_RELEASE)
        swap_release.install(self.runtime, self.kernel)
        self.kernel.swap_release = swap_release
        self.reap = pol.build(REAP)
        self.reap.install(self.runtime, self.kernel, list(self.processes))
        if sc.lmkd is not None or sc.cgroup is not None:
            self.scheduler.add_lock(CGROUP_MUTEX, "mutex")
        if sc.cgroup is not None:
            cg = sc.cgroup
            self.runtime.add(CgroupMigrations(
                "cgroup_migrations", self.scheduler, threads=cg.threads,
                interval_mean_ns=cg.interval_mean_ns, hold_mean_ns=cg.hold_mean_ns,
                thread_kw=thread_kw(cg.thread, dev)))
        if sc.lmkd is not None:
            self._add_lmkd(exp)
        oom = exp.kernel.oom
        add_oom_killer(self.runtime, self.kernel, lambda: self.processes, reaper_delay_ns=oom.reaper_delay_ns,
                       reaper_nice=oom.reaper_nice, on_kill=self._decided)

    def _add_storm(self, exp: Experiment) -> None:
        storm = exp.config.storm
        kw = thread_kw(storm.thread, exp.device)
        # each victim slept where it last ran (filling and paging out its memory): a core of its cpuset, per seed
        rng = random.Random(stream_seed(self.runtime.seed, "storm"))

        def slept_on(cpus: list[int]) -> dict[str, int]:
            return {"last_cpu": rng.choice(cpus)} if storm.random_last_cpu else {}
        for i in range(storm.count):
            pid = STORM_PID + i
            mm = MM(pid, f"victim{i}", storm.compression_ratio)
            self.kernel.add_mm(mm, anon=mb_to_pages(storm.resident_mb), file=mb_to_pages(storm.file_mb),
                               swap=mb_to_pages(storm.swapped_mb))
            proc = Process(f"victim{i}", self.kernel, mm, kw | slept_on(kw["cpus"]))
            self._add_process(proc)
        if storm.reapers:
            reapers = self.runtime.add(MreleaseReapers("storm_reaper", self.kernel, storm.reapers,
                                                       thread_kw(storm.reaper_thread, exp.device)))
            for proc in self.processes:
                proc.killed.connect(reapers.hand)
        kill_ns = storm.kill_at_ns
        poller = storm.pool_poller
        on_sent = None
        if poller is not None and storm.swapped_mb:  # nothing in ZRAM to watch without swapped memory
            victims = [proc.mm for proc in self.processes]
            self.pool_poller = self.runtime.add(PoolPoller(
                "pool_poller", self.scheduler, lambda: self.memory.zpool, lambda: sum(mm.zpool for mm in victims),
                interval_ns=poller.interval_ns, read_ns=poller.read_ns,
                returned_share=poller.returned_share, thread_kw=thread_kw(poller.thread, exp.device)))
            on_sent = self.pool_poller.begin
        sender = storm.sender
        if sender is None:
            self.runtime.add(SimultaneousKill("storm", self.processes, kill_ns, on_sent))
        else:
            # the sender slept where the seed says, among its cpuset's cores
            kw = thread_kw(sender.thread, exp.device)
            self.runtime.add(KillSender("storm_sender", self.scheduler, self.processes, kill_ns,
                                        sender.kill_ns, kw | slept_on(kw["cpus"]),
                                        on_sent))

    def _add_process(self, proc: Process) -> None:
        proc.killed.connect(self._on_kill)
        proc.mm_freed.connect(self._on_freed)
        proc.watch_exit(self._on_exit)
        self.processes.append(self.runtime.add(proc))

    def _add_apps(self, apps: AppsConfig, dev: DeviceConfig) -> None:
        """Background apps, sizes drawn from the ``apps`` stream of the seed, bands in config order."""
        rng = random.Random(stream_seed(self.runtime.seed, "apps"))
        pid = APP_PID
        for band, n in zip(apps.bands, band_sizes(apps.count, apps.bands)):
            for adj in spread_adj(band, n):
                name = f"{band.name}{pid - APP_PID}"
                mm = MM(pid, name, apps.compression_ratio, adj)
                swapped, resident, file = (draw_mb(rng, d) for d in (apps.swapped_mb, apps.resident_mb, apps.file_mb))
                try:
                    self.kernel.add_mm(mm, anon=mb_to_pages(resident), file=mb_to_pages(file),
                                       swap=mb_to_pages(swapped))
                except ValueError as exc:
                    raise ValueError(f"{exc}: lower apps.count or the app sizes, or raise "
                                     f"device_overrides.memory.total_mb / zram_disksize_mb") from None
                proc = Process(name, self.kernel, mm, thread_kw(band.thread, dev), exit_class=apps.exit_class)
                if band.burst_mean_us > 0:
                    burst_ns, sleep_ns = band.burst_mean_ns, band.sleep_mean_ns
                    proc.activity = lambda p=proc: bursts(p.rng, burst_ns, sleep_ns, (p.name,))
                self._add_process(proc)
                pid += 1

    def _add_system(self, system: SystemMemoryConfig) -> None:
        """System processes take the RAM left over, less ``free_mb``."""
        mem = self.memory
        mm = MM(SYSTEM_PID, "system", system.compression_ratio, system.adj)
        swap = mb_to_pages(system.swapped_mb)
        zpool = zram_pages(swap, system.compression_ratio)
        resident = mem.free - zpool - mb_to_pages(system.free_mb)
        if resident < 0:
            need = (mem.total - mem.free + zpool + mb_to_pages(system.free_mb)) / PAGES_PER_MB
            raise ValueError(
                f"the apps, the camera and system.free_mb need {need:.0f} MB, more than the device's "
                f"{mem.total / PAGES_PER_MB:.0f} MB: lower apps.count or the app sizes, or raise "
                f"device_overrides.memory.total_mb")
        self.kernel.add_mm(mm, anon=resident, file=0, swap=swap)

    def _add_camera(self, exp: Experiment) -> None:
        cam = exp.config.camera
        dev = exp.device
        mm = MM(CAMERA_PID, "camera", 1.0, 0)
        self.kernel.add_mm(mm, anon=mb_to_pages(cam.resident_mb), file=0, swap=0)
        pv = cam.preview
        stats = self.frames["preview"] = FrameStats("preview", pv.period_ns, self.interval_ns,
                                                    self.events.emit, self.timeline)
        preview = self.runtime.add(PeriodicThread(
            "preview", self.scheduler, period_ns=stats.period_ns, budget_ns=pv.budget_ns,
            start_ns=None, thread_kw=thread_kw(pv.thread, dev), on_frame=stats.on_frame))
        delay_ns = pv.start_delay_ns
        self.camera = self.runtime.add(CameraLaunch(
            "camera", self.kernel, mm, launch_ns=cam.launch_ns, alloc_pages=mb_to_pages(cam.alloc_mb),
            window_ns=cam.alloc_window_ns, steps=cam.alloc_steps, threads=cam.launch_threads,
            thread_kw=thread_kw(cam.thread, dev), preview=preview, preview_delay_ns=delay_ns,
            on_ready=lambda t: setattr(self, "preview_start", (t + delay_ns, self.memory.free))))

    def _add_lmkd(self, exp: Experiment) -> None:
        cfg = exp.config.lmkd
        dev = exp.device
        pol = exp.config.policies
        killer = pol.build(KILL, signal_ns=cfg.costs.signal_ns)
        reapers = [
            self.runtime.add(LmkdReaper(
                f"lmkd_reaper{i}", self.kernel, thread_kw=thread_kw(cfg.reaper_thread, dev), costs=cfg.costs,
                kill_method=killer, victim_cpus=dev.cpusets[cfg.victim_cpuset],
                victim_group=dev.cpu_group(cfg.victim_cpuset), victim_nice=cfg.victim_nice, reap=self.reap))
            for i in range(cfg.reapers)
        ]
        lmkd = self.runtime.add(Lmkd(
            "lmkd", self.kernel, list(self.processes), props=cfg.props, costs=cfg.costs,
            thread_kw=thread_kw(cfg.main_thread, dev), kill_method=killer, reapers=reapers,
            on_kill=self._decided))
        props = cfg.props
        window = props.psi_window_ns
        self.runtime.add(PsiMonitor("psi_monitor", self.memory.psi, [
            PsiTrigger("medium", "some", props.psi_partial_stall_ns, window),
            PsiTrigger("critical", "full", props.psi_complete_stall_ns, window),
        ], lmkd))

    def _memory_sample(self) -> MemorySample:
        mem = self.memory
        mem.psi.flush()
        return MemorySample(mem.free, mem.zpool, mem.psi.some_ns, mem.psi.full_ns)

    def cpu_window(self, t_ns: int, busy: dict[str, int]) -> None:
        """A cpu window ends at ``t_ns`` (or the run does): the peaks of exit work and of the total load (all
        non-idle time, capacity-weighted), at the finest window."""
        load = self.scheduler.capacity_busy()
        if self._cpu_last is not None:
            t0, before = self._cpu_last
            share = exit_share(before, busy, len(self.scheduler.cores) * (t_ns - t0), self.exit_classes)
            if share > self.exit_peak[0]:
                self.exit_peak = (share, t0)
            total = (load - self._load_last) / (self.scheduler.total_capacity * (t_ns - t0))
            if total > self.load_peak[0]:
                self.load_peak = (total, t0)
        self._cpu_last = (t_ns, busy)
        self._load_last = load

    def end_cpu_windows(self) -> tuple[int, dict[str, int]]:
        """The run's last, partial cpu window is counted (once); the cumulative CPU by class at the end."""
        end = (self.runtime.now, self.scheduler.busy_by_class())
        if self._cpu_last is not None and self._cpu_last[0] < end[0]:
            self.cpu_window(*end)
        return end

    def _busy(self) -> tuple[int, dict[str, int]]:
        return self.runtime.now, self.scheduler.busy_by_class()

    def _decided(self, victim: Process, reason: str, min_adj: int, via: str) -> None:
        """lmkd or the OOM killer chose ``victim``: the kill log's reason, threshold and sender."""
        self.kill_reasons[victim.pid] = (reason, min_adj, via, self.runtime.now)

    def _on_kill(self, proc: Process) -> None:
        if self.storm_start is None:
            self.storm_start = self._busy()

    def _on_freed(self, proc: Process) -> None:
        self.freed_latency.record(proc.freed_at, proc.freed_at - proc.killed_at)
        self.storm_last_exit = self._busy()

    def _on_exit(self, proc: Process) -> None:
        self.exit_latency.record(proc.exited_at, proc.exited_at - proc.killed_at)
        self.storm_last_exit = self._busy()

    def _on_delay(self, th: Thread, delay_ns: int) -> None:
        rec = self.sched_delay.get(th.thread_class)
        if rec is None:
            rec = self.sched_delay[th.thread_class] = LatencyRecorder(
                f"sched_delay.{th.thread_class}", self.interval_ns
            )
        rec.record(self.runtime.now, delay_ns)
