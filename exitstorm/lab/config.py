"""Experiment configuration: TOML files validated into frozen attrs classes.

A scenario config names its device profile with a top-level
``device = "NAME"`` (a file ``devices/NAME.toml`` beside the scenario's
directory, i.e. under ``configs/``) or a path to a TOML file. ``--set
dotted.key=value`` overrides are applied to the scenario before validation,
so they are checked exactly like the file.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any, Iterator, Literal

import attrs
from attrs import evolve, field, frozen
from attrs.validators import optional

from actors.android.lmkd import LmkdCosts, LmkdProps
from actors.cpu.scheduler import NO_GROUP, CpuGroup, Policy, Preempt
from actors.kernel.kernel import KSWAPD_CLASS
from actors.kernel.oom_reaper import OOM_REAPER_CLASS
from actors.kernel.profiles import (AllocProfile, DeviceCosts, ExitProfile, KernelProfile, LockSpec, MemorySpec,
    ReapProfile, ReclaimProfile)
from actors.kernel.workqueue import KWORKER_CLASS
from actors.runtime.quantities import InNs
from actors.runtime.validators import (InvalidValue, between, in_range, non_empty, non_negative, positive, ratio,
    refers_to, unit_share, zero_or_between)
from exitstorm.lab.coherence import check_coherent
from exitstorm.outputs.results import SAFE_NAME_RULE, safe_name
from exitstorm.schema import ConfigError, structure
from policies.kill import KILL
from policies.reap import REAP
from policies.registry import Axis, Remedy
from policies.swap_release import SWAP_RELEASE

EventCategory = Literal["actor", "sched", "lock", "metric"]
#: the classes of the threads the model makes itself (the others are named in the scenario)
MODEL_THREAD_CLASSES = (KSWAPD_CLASS, KWORKER_CLASS, OOM_REAPER_CLASS)


def _covers_exit(inst: "IdleStateConfig", attribute: Any, value: float) -> None:
    if value < inst.exit_latency_us:
        raise InvalidValue(attribute.name, f"at least exit_latency_us ({inst.exit_latency_us}): a state is not "
                           "worth entering for less than it takes to leave", value)


@frozen
class IdleStateConfig:
    """A cpuidle state of a cluster's cores (device tree ``idle-states``): how long leaving it takes and how
    long an idle stretch must last for the governor to enter it."""

    name: str = field(validator=non_empty)
    exit_latency_us: float = field(validator=between(0, 100_000))
    min_residency_us: float = field(validator=[between(0, 1_000_000), _covers_exit])

    exit_latency_ns = InNs("exit_latency_us")
    min_residency_ns = InNs("min_residency_us")


def _states_deepening(_inst: "ClusterConfig", attribute: Any, value: list[IdleStateConfig]) -> None:
    for i in range(1, len(value)):
        if value[i].min_residency_us <= value[i - 1].min_residency_us:
            raise InvalidValue(f"{attribute.name}[{i}].min_residency_us",
                               f"more than the shallower state's ({value[i - 1].min_residency_us}): states are "
                               "listed shallowest first", value[i].min_residency_us)


@frozen
class ClusterConfig:
    """Identical cores; capacity is relative to the fastest core of the device (1.0)."""

    name: str
    count: int = field(validator=in_range(1, 1024))
    capacity: float = field(validator=positive)
    #: the cores' idle states, shallowest first (none: a woken thread runs at once)
    idle_states: list[IdleStateConfig] = field(factory=list, validator=_states_deepening)

    def idle_state_table(self) -> tuple[tuple[int, int], ...]:
        """``(target residency ns, exit latency ns)`` per state, as the scheduler's cores take them."""
        return tuple((st.min_residency_ns, st.exit_latency_ns) for st in self.idle_states)


def _check_cpus(key: str, cpus: list[int], ncpu: int) -> None:
    if not cpus:
        raise InvalidValue(key, "a non-empty list of CPU numbers", cpus)
    if any(not 0 <= cpu < ncpu for cpu in cpus):
        raise InvalidValue(key, f"CPU numbers in 0..{ncpu - 1}", cpus)


def _cpusets_valid(inst: "DeviceConfig", _attribute: Any, value: dict[str, list[int]]) -> None:
    for name, cpus in value.items():
        _check_cpus(f"cpusets.{name}", cpus, inst.ncpus)


def _cpus_valid(inst: "DeviceConfig", attribute: Any, value: list[int]) -> None:
    _check_cpus(attribute.name, value, inst.ncpus)
    if len(set(value)) != len(value):
        raise InvalidValue(attribute.name, "distinct CPU numbers", value)


def _optional_cpus_valid(inst: "DeviceConfig", attribute: Any, value: list[int] | None) -> None:
    if value is not None:
        _cpus_valid(inst, attribute, value)


@frozen
class CpuctlConfig:
    """An Android cpu cgroup (/dev/cpuctl/<name>): what the fair class's placement reads of it."""

    #: cpu.uclamp.min on the 0..1024 scale (a boost: > 0 also marks the group's tasks "boosted")
    uclamp_min: int = field(validator=in_range(0, 1024))
    #: cpu.uclamp.latency_sensitive (prefer_idle): place its tasks on an idle core
    latency_sensitive: bool


def _cpuctl_valid(inst: "DeviceConfig", _attribute: Any, value: dict[str, CpuctlConfig]) -> None:
    for name in value:
        if name not in inst.cpusets:
            raise InvalidValue(f"cpuctl.{name}", f"a cpuset of the device ({', '.join(sorted(inst.cpusets))})",
                               name)


def _energy_aware_valid(inst: "DeviceConfig", attribute: Any, value: bool) -> None:
    if value and len({c.capacity for c in inst.clusters}) < 2:
        raise InvalidValue(attribute.name, "false on cores of one capacity (EAS needs asymmetric capacities)",
                           value)


def _not_below_min(inst: "TickInterruptConfig", attribute: Any, value: float) -> None:
    if value < inst.min_us or (value > 0 and inst.min_us == 0):
        raise InvalidValue(attribute.name, f"at least min_us ({inst.min_us}), and min_us > 0 unless both are 0",
                           value)


@frozen
class TickInterruptConfig:
    """The time a busy core spends in each tick's interrupt and softirqs, drawn uniform in [min_us, max_us]
    per tick (both 0: none, every seed's CPUs in lockstep)."""

    min_us: float = field(validator=between(0, 1000))
    max_us: float = field(validator=[between(0, 1000), _not_below_min])

    min_ns = InNs("min_us")
    max_ns = InNs("max_us")


@frozen
class KernelBuildConfig:
    """How this device's kernel is built and booted, where it differs from its kernel profile's defaults
    (a development VM's distribution kernel is not an Android GKI build)."""

    preempt: "Preempt | None" = None
    hz: int | None = field(default=None, validator=optional(in_range(100, 1000)))


@frozen
class DeviceConfig:
    """A device profile: its cores (numbered cluster by cluster) and its cpusets."""

    name: str
    description: str
    clusters: list[ClusterConfig] = field(validator=non_empty)
    memory: MemorySpec
    costs: DeviceCosts
    cpusets: dict[str, list[int]] = field(validator=_cpusets_valid)
    #: the CPUs unbound workqueues' kworkers may run on (/sys/devices/virtual/workqueue/cpumask)
    wq_unbound_cpumask: list[int] = field(validator=_cpus_valid)
    build: KernelBuildConfig = KernelBuildConfig()
    #: kswapd's CPUs (kswapd_run(): its node's, every CPU here, unless a vendor pins it); None: every CPU
    kswapd_cpus: list[int] | None = field(default=None, validator=_optional_cpus_valid)
    #: the oom_reaper kthread's CPUs (a kthread's default: every housekeeping CPU); None: every CPU
    oom_reaper_cpus: list[int] | None = field(default=None, validator=_optional_cpus_valid)
    #: energy-aware scheduling (an energy model for asymmetric cores, as Android devices have)
    energy_aware: bool = field(default=False, validator=_energy_aware_valid)
    #: Android's cpu cgroups by name: a thread in cpuset X is also in cpu cgroup X, as the task profiles put it
    cpuctl: dict[str, CpuctlConfig] = field(factory=dict, validator=_cpuctl_valid)
    #: the tick interrupt's cost on a busy core (none unless given)
    tick_interrupt: TickInterruptConfig = TickInterruptConfig(0, 0)

    def cpu_group(self, cpuset: str) -> CpuGroup:
        """The placement attributes of the cpu cgroup that goes with ``cpuset`` (none declared: defaults)."""
        group = self.cpuctl.get(cpuset)
        return NO_GROUP if group is None else CpuGroup(group.uclamp_min, group.latency_sensitive)

    @property
    def ncpus(self) -> int:
        return sum(c.count for c in self.clusters)


@frozen
class SchedConfig:
    """Fair-class tunables (kernel/sched/fair.c: sysctl_sched_base_slice, features), the preemption model
    and the tick (CONFIG_PREEMPT_*, CONFIG_HZ), and periodic load balancing (kernel/sched/topology.c)."""

    #: bounded so that a run's events stay finite: 50 us (a slice of 1 ns made a 2 s run last 95 minutes)
    base_slice_ns: int = field(validator=between(50_000, 1_000_000_000))
    tunable_scaling: Literal["none", "log", "linear"]
    run_to_parity: bool
    wakeup_preemption: bool
    preempt: "Preempt"
    hz: int = field(validator=in_range(100, 1000))
    #: a busy CPU balances this many times less often than an idle one (sd->busy_factor)
    busy_factor: int = field(validator=in_range(1, 1024))
    #: a scheduling domain's balance interval per CPU it spans, ms (sd->min_interval = sd_weight ms, growing to
    #: max_interval = 2 x sd_weight ms while balancing finds nothing to move)
    balance_ms_per_cpu: float = field(validator=between(0.01, 1000))


@frozen
class KswapdConfig:
    nice: int = field(validator=in_range(-20, 19))


@frozen
class OomConfig:
    """The OOM killer's oom_reaper (mm/oom_kill.c): how long a victim waits on its list before it is reaped
    (OOM_REAPER_DELAY), and the kthread's nice."""

    reaper_delay_ms: float = field(validator=between(0, 60_000))
    reaper_nice: int = field(validator=in_range(-20, 19))

    reaper_delay_ns = InNs("reaper_delay_ms")


def _locks_declared(inst: "KernelConfig", _attribute: Any, value: dict[str, LockSpec]) -> None:
    paths = {
        "exit.present_page": inst.exit.present_page, "exit.swap_entry": inst.exit.swap_entry,
        "exit.file_page": inst.exit.file_page, "exit.fixed_before_mm": inst.exit.fixed_before_mm,
        "exit.fixed_after_mm": inst.exit.fixed_after_mm, "reclaim.compress_page": inst.reclaim.compress_page,
        "alloc.page": inst.alloc.page,
    }
    for key, path in paths.items():
        for i, seg in enumerate(path.segments):
            for kind, names in (("locks", seg.locks), ("readers", seg.readers)):
                for name in names:
                    if name not in value:
                        raise InvalidValue(f"{key}.segments[{i}].{kind}",
                                           f"locks declared under [locks] ({', '.join(sorted(value))})", name)
            for name in seg.readers:
                if value[name].kind not in ("rwlock", "rwsem", "line"):
                    raise InvalidValue(f"{key}.segments[{i}].readers", "locks of kind rwlock, rwsem or line", name)


@frozen
class KernelConfig:
    """A kernel profile: scheduler tunables, kswapd, the exit and reclaim paths, their locks."""

    name: str
    description: str
    sched: "SchedConfig"
    kswapd: KswapdConfig
    exit: ExitProfile
    reclaim: ReclaimProfile
    alloc: AllocProfile
    reap: ReapProfile
    oom: OomConfig
    locks: dict[str, LockSpec] = field(validator=_locks_declared)

    @property
    def profile(self) -> KernelProfile:
        return KernelProfile(exit=self.exit, reclaim=self.reclaim, alloc=self.alloc, reap=self.reap,
                             locks=self.locks)


@frozen
class PoolPollerConfig:
    """A user-space thread reading the ZRAM pool's size from the kill on, every ``interval_us`` of sleep, until
    ``returned_share`` of the pool is back: the real harness's witness of returned memory, with the CPU each
    read costs (the CPU it takes from the storm is part of what the real side measures)."""

    interval_us: float = field(validator=between(10, 1_000_000))
    #: thread CPU per read (open, read and parse mm_stat, then the sleep's syscalls)
    cpu_us: float = field(validator=between(0.1, 100_000))
    returned_share: float = field(validator=unit_share)
    thread: "ThreadConfig"

    interval_ns = InNs("interval_us")
    read_ns = InNs("cpu_us")


@frozen
class KillSenderConfig:
    """The thread sending a storm's SIGKILLs back to back (the harness's main thread), ``kill_us`` of CPU each."""

    kill_us: float = field(validator=between(0.1, 100_000))
    thread: "ThreadConfig"

    kill_ns = InNs("kill_us")


@frozen
class StormConfig:
    """``count`` identical processes SIGKILLed together at ``kill_at_ms``: at one instant, or by a ``sender``
    thread back to back.

    ``reapers`` threads (as lmkd's reaper threads, on ``reaper_thread``) then
    call process_mrelease() on the victims, each taking the next one in
    kill order.
    """

    count: int = field(validator=in_range(1, 100_000))
    swapped_mb: float = field(validator=non_negative)
    resident_mb: float = field(validator=non_negative)
    file_mb: float = field(validator=non_negative)
    compression_ratio: float = field(validator=ratio)
    kill_at_ms: float = field(validator=non_negative)
    thread: "ThreadConfig"
    reapers: int = field(default=0, validator=in_range(0, 64))
    reaper_thread: "ThreadConfig | None" = None
    sender: KillSenderConfig | None = None
    pool_poller: PoolPollerConfig | None = None
    #: run-to-run variation: each victim (and the sender) slept, before the kill, on a core of its cpuset
    #: drawn from the seed, where it last ran (false: no core, so the kill's wake-up places it)
    random_last_cpu: bool = True

    def __attrs_post_init__(self) -> None:
        if self.reapers and self.reaper_thread is None:
            raise InvalidValue("reaper_thread", "a thread table for the reapers (storm.reapers > 0)", None)

    kill_at_ns = InNs("kill_at_ms")


@frozen
class RunConfig:
    """The ``[scenario]`` table: how long to simulate, the seed, what to log."""

    duration_s: float = field(validator=between(0.001, 3600))
    seed: int = field(validator=non_negative)
    events: list[EventCategory]
    #: each interval is a line of every .hlog: at least 1 ms
    hist_interval_ms: float = field(validator=between(1, 3_600_000))
    #: period of the sampled free-memory timeline
    sample_ms: float = field(default=10.0, validator=between(0.1, 60_000))
    #: window of the CPU-share timeline (and of its peaks)
    cpu_window_ms: float = field(default=100.0, validator=between(1, 60_000))
    #: the most points a timeline keeps: a longer run's timelines are downsampled (every other point dropped,
    #: the period doubled) so that its memory and summary.json stay bounded; peaks use the finest window
    timeline_max_points: int = field(default=10_000, validator=in_range(100, 1_000_000))
    #: thread classes whose CPU time is exit-related work (for the peak share); by default the scenario's
    #: exiting tasks and reapers, and the model's kworkers and oom_reaper
    exit_classes: list[str] | None = field(default=None, metadata=refers_to("thread classes"))
    #: the root frame of each stack in profile.folded: none, the thread's class, or its process (owning actor)
    profile_by: Literal["stack", "thread_class", "process"] = "stack"
    #: trace.json keeps the first this many CPU slices, lock waits and frames (0: no trace.json)
    trace_max_events: int = field(default=200_000, validator=non_negative)
    #: run-to-run variation: the run starts at a point of the tick's and the load balancer's periods drawn
    #: from the seed (false: at the start of both, the same for every seed)
    random_phases: bool = True
    #: an exit (kill → exit) longer than this is a slow one, counted per run
    slow_exit_ms: float = field(default=500.0, validator=between(1, 3_600_000))

    duration_ns = InNs("duration_s")
    slow_exit_ns = InNs("slow_exit_ms")
    hist_interval_ns = InNs("hist_interval_ms", minimum=1)
    sample_ns = InNs("sample_ms", minimum=1)
    cpu_window_ns = InNs("cpu_window_ms", minimum=1)


@frozen
class ThreadConfig:
    """How a thread is scheduled; ``prio`` is for fifo, ``nice`` for fair."""

    policy: Policy
    cpuset: str = field(metadata=refers_to("a cpuset of the device"))
    thread_class: str
    prio: int = field(default=0, validator=in_range(0, 99))
    nice: int = field(default=0, validator=in_range(-20, 19))

    def __attrs_post_init__(self) -> None:
        if self.policy == "fifo" and self.prio < 1:
            raise InvalidValue("prio", "an integer in 1..99 for policy 'fifo'", self.prio)


def _fits_period(budget_us: float, period_us: float) -> None:
    """A frame's work fits its period on the fastest core: else every frame is late by construction."""
    if not budget_us < period_us:
        raise InvalidValue("budget_us", f"a budget shorter than period_us ({period_us:g})", budget_us)


@frozen
class PeriodicConfig:
    """A periodic thread (e.g. a camera preview): a CPU budget every period."""

    name: str
    thread: ThreadConfig
    period_us: float = field(validator=between(100, 10_000_000))
    budget_us: float = field(validator=positive)
    start_ms: float = field(validator=non_negative)

    def __attrs_post_init__(self) -> None:
        _fits_period(self.budget_us, self.period_us)

    period_ns = InNs("period_us")
    budget_ns = InNs("budget_us")
    start_ns = InNs("start_ms")


@frozen
class LoadConfig:
    """``count`` CPU-bound threads alternating exponential bursts and sleeps."""

    name: str
    count: int = field(validator=in_range(1, 100_000))
    thread: ThreadConfig
    burst_mean_us: float = field(validator=between(1, 1e9))
    sleep_mean_us: float = field(validator=zero_or_between(1, 1e9))

    burst_mean_ns = InNs("burst_mean_us")
    sleep_mean_ns = InNs("sleep_mean_us")


@frozen
class UniformConfig:
    """A value drawn per app, uniformly in [min, max] (min == max for a fixed value)."""

    min: float = field(validator=non_negative)
    max: float = field(validator=non_negative)

    def __attrs_post_init__(self) -> None:
        if self.max < self.min:
            raise InvalidValue("max", f"a number >= min ({self.min})", self.max)


@frozen
class AppBandConfig:
    """Background apps of one oom_score_adj band (docs/domain.md §1.2).

    The band's apps get adj values spread evenly over [adj_min, adj_max],
    the most recently used app lowest. ``share`` is the band's share of
    ``apps.count``. With ``burst_mean_us = 0`` the apps are frozen (cached
    apps usually are); otherwise the main thread alternates bursts and sleeps.
    """

    name: str
    adj_min: int = field(validator=in_range(-1000, 1000))
    adj_max: int = field(validator=in_range(-1000, 1000))
    share: float = field(validator=unit_share)
    thread: ThreadConfig
    burst_mean_us: float = field(default=0.0, validator=zero_or_between(1, 1e9))
    sleep_mean_us: float = field(default=0.0, validator=zero_or_between(1, 1e9))

    def __attrs_post_init__(self) -> None:
        if self.adj_max < self.adj_min:
            raise InvalidValue("adj_max", f"an adj >= adj_min ({self.adj_min})", self.adj_max)

    burst_mean_ns = InNs("burst_mean_us")
    sleep_mean_ns = InNs("sleep_mean_us")


@frozen
class AppsConfig:
    """The background apps LMKD chooses its victims from; sizes drawn per app from the seed."""

    count: int = field(validator=in_range(0, 100_000))
    swapped_mb: UniformConfig
    resident_mb: UniformConfig
    file_mb: UniformConfig
    compression_ratio: float = field(validator=ratio)
    bands: list[AppBandConfig] = field(validator=non_empty)
    #: accounting class of a killed app's thread while it exits
    exit_class: str = "exiting"

    def __attrs_post_init__(self) -> None:
        total = sum(band.share for band in self.bands)
        if abs(total - 1.0) > 1e-6:
            raise InvalidValue("bands", "shares of apps.count summing to 1", round(total, 6))


@frozen
class SystemMemoryConfig:
    """The processes LMKD never kills (system_server, SurfaceFlinger, HALs; adj < 0).

    They hold whatever RAM the apps and the camera leave, less ``free_mb``:
    the free memory when the scenario starts, so that pressure builds the
    same way whatever the number of apps.
    """

    free_mb: float = field(validator=non_negative)
    swapped_mb: float = field(validator=non_negative)
    compression_ratio: float = field(validator=ratio)
    adj: int = field(validator=in_range(-1000, -1))


@frozen
class PreviewConfig:
    """The camera preview: a fixed CPU budget per frame (at capacity 1.0) every period."""

    period_us: float = field(validator=between(100, 10_000_000))
    budget_us: float = field(validator=positive)
    start_delay_ms: float = field(validator=non_negative)
    stutter_window_frames: int = field(validator=in_range(1, 1_000_000))
    #: the preview's initialization, centred on its start: free memory is read over it (mean and minimum)
    init_window_ms: float = field(validator=between(1, 60_000))
    thread: ThreadConfig

    def __attrs_post_init__(self) -> None:
        _fits_period(self.budget_us, self.period_us)

    period_ns = InNs("period_us")
    budget_ns = InNs("budget_us")
    start_delay_ns = InNs("start_delay_ms")
    init_window_ns = InNs("init_window_ms")


@frozen
class CameraConfig:
    """The camera cold launch: an allocation burst over a window, then the preview."""

    launch_ms: float = field(validator=non_negative)
    resident_mb: float = field(validator=non_negative)
    alloc_mb: float = field(validator=non_negative)
    alloc_window_ms: float = field(validator=non_negative)
    alloc_steps: int = field(validator=in_range(1, 1_000_000))
    launch_threads: int = field(validator=in_range(1, 64))
    thread: ThreadConfig
    preview: PreviewConfig

    launch_ns = InNs("launch_ms")
    alloc_window_ns = InNs("alloc_window_ms")


@frozen
class LmkdConfig:
    """lmkd: its properties and costs, its main and reaper threads, where a reaper moves a victim."""

    props: LmkdProps
    costs: LmkdCosts
    reapers: int = field(validator=in_range(0, 64))
    main_thread: ThreadConfig
    reaper_thread: ThreadConfig
    victim_cpuset: str = field(metadata=refers_to("a cpuset of the device"))
    victim_nice: int = field(validator=in_range(-20, 19))


class _Policies:
    """The remedy on each axis (docs/design.md §7), and the parameter tables of the registered remedies.

    The class (``PoliciesConfig``) is made from the axes' registries: a field per axis (one of its
    remedies' names) and one per parameter table, so that a remedy is known here without being named.
    """

    def remedy(self, axis: Axis) -> Remedy:
        return axis.get(getattr(self, axis.name))

    def params(self, axis: Axis) -> Any:
        """The parameters of the axis's selected remedy (None if it has none)."""
        table = self.remedy(axis).table
        return None if table is None else getattr(self, table)

    def build(self, axis: Axis, **model: Any) -> Any:
        """The axis's selected remedy, made with its parameters and what the model gives it."""
        return axis.build(getattr(self, axis.name), self.params(axis), **model)

    def __attrs_post_init__(self) -> None:
        for axis in POLICY_FIELD_ORDER:
            remedy = self.remedy(axis)
            if remedy.table is not None and getattr(self, remedy.table) is None:
                raise InvalidValue(remedy.table, f"a [policies.{remedy.table}] table of parameters "
                                                 f"(policies.{axis.name} = {remedy.name!r} needs it)", None)


#: the order of the [policies] fields: the axes as a scenario lists them, then their remedies' tables
POLICY_FIELD_ORDER = (KILL, REAP, SWAP_RELEASE)


def _policies_class() -> type:
    fields: dict[str, Any] = {axis.name: attrs.field(type=Literal[tuple(axis.names())], default=axis.default)
                              for axis in POLICY_FIELD_ORDER}
    for axis in POLICY_FIELD_ORDER:
        for remedy in axis.remedies():
            if remedy.table is not None and remedy.table not in fields:
                fields[remedy.table] = attrs.field(type=remedy.params | None, default=None)
    return attrs.make_class("PoliciesConfig", fields, bases=(_Policies,), frozen=True)


PoliciesConfig = _policies_class()


@frozen
class CgroupConfig:
    """System threads migrating tasks between cgroups: background users of cgroup_mutex."""

    threads: int = field(validator=in_range(0, 1024))
    interval_mean_us: float = field(validator=between(1, 1e9))
    hold_mean_us: float = field(validator=positive)
    thread: ThreadConfig

    interval_mean_ns = InNs("interval_mean_us")
    hold_mean_ns = InNs("hold_mean_us")


@frozen
class ScenarioConfig:
    """A scenario file."""

    device: str
    kernel: str
    scenario: RunConfig
    periodic: list[PeriodicConfig] = []
    load: list[LoadConfig] = []
    storm: StormConfig | None = None
    apps: AppsConfig | None = None
    system: SystemMemoryConfig | None = None
    camera: CameraConfig | None = None
    lmkd: LmkdConfig | None = None
    cgroup: CgroupConfig | None = None
    policies: PoliciesConfig = PoliciesConfig()  # type: ignore[valid-type]
    #: named variants for ``exitstorm compare``: dotted key → value overrides
    variants: dict[str, dict[str, Any]] = {}
    #: keys merged into the device / kernel profile before validation (sensitivity runs)
    device_overrides: dict[str, Any] = {}
    kernel_overrides: dict[str, Any] = {}

    def threads(self) -> Iterator[tuple[str, ThreadConfig]]:
        """(key path, spec) of every thread the scenario describes."""
        for i, spec in enumerate(self.periodic):
            yield f"periodic[{i}].thread", spec.thread
        for i, spec in enumerate(self.load):
            yield f"load[{i}].thread", spec.thread
        if self.storm is not None:
            yield "storm.thread", self.storm.thread
            if self.storm.reaper_thread is not None:
                yield "storm.reaper_thread", self.storm.reaper_thread
            if self.storm.sender is not None:
                yield "storm.sender.thread", self.storm.sender.thread
            if self.storm.pool_poller is not None:
                yield "storm.pool_poller.thread", self.storm.pool_poller.thread
        if self.apps is not None:
            for i, band in enumerate(self.apps.bands):
                yield f"apps.bands[{i}].thread", band.thread
        if self.camera is not None:
            yield "camera.thread", self.camera.thread
            yield "camera.preview.thread", self.camera.preview.thread
        if self.cgroup is not None:
            yield "cgroup.thread", self.cgroup.thread
        if self.lmkd is not None:
            yield "lmkd.main_thread", self.lmkd.main_thread
            yield "lmkd.reaper_thread", self.lmkd.reaper_thread

    def thread_classes(self) -> set[str]:
        """Every class a thread of this scenario has, exiting apps' and the model's own threads included."""
        classes = {thread.thread_class for _, thread in self.threads()} | set(MODEL_THREAD_CLASSES)
        if self.apps is not None:
            classes.add(self.apps.exit_class)
        return classes

    def exit_work_classes(self) -> list[str]:
        """The classes whose CPU is exit work: ``scenario.exit_classes``, or the exiting tasks (apps, a
        storm's victims), the reapers (lmkd's, a storm's, the oom_reaper) and the kworkers."""
        if self.scenario.exit_classes is not None:
            return list(self.scenario.exit_classes)
        classes = {KWORKER_CLASS, OOM_REAPER_CLASS}
        if self.apps is not None:
            classes.add(self.apps.exit_class)
        if self.lmkd is not None:
            classes.add(self.lmkd.reaper_thread.thread_class)
        if self.storm is not None:
            classes.add(self.storm.thread.thread_class)
            if self.storm.reaper_thread is not None:
                classes.add(self.storm.reaper_thread.thread_class)
        return sorted(classes)

    def __attrs_post_init__(self) -> None:
        for name in self.variants:
            if not safe_name(name):
                raise InvalidValue("variants", f"variant names that are {SAFE_NAME_RULE} (each becomes a "
                                               f"directory of the results)", name)
        if self.storm is not None and self.storm.reapers and self.policies.reap != "process_mrelease":
            raise InvalidValue("storm.reapers", f"0 with policies.reap = {self.policies.reap!r} (the storm's "
                                                "reapers call process_mrelease)", self.storm.reapers)


@frozen
class Experiment:
    """A validated scenario with its device resolved, plus where it came from."""

    source: str
    config: ScenarioConfig
    device: DeviceConfig
    kernel: KernelConfig
    raw: dict[str, Any]

    def with_seed(self, seed: int) -> "Experiment":
        """The same experiment with another seed (as ``--seed`` would give, without re-reading files)."""
        if seed < 0:
            raise ConfigError(f"{self.source}: scenario.seed: expected an integer >= 0, got {seed}")
        raw = {**self.raw, "scenario": {**self.raw["scenario"], "seed": seed}}
        scenario = evolve(self.config.scenario, seed=seed)
        return evolve(self, config=evolve(self.config, scenario=scenario), raw=raw)


def load_device(path: Path) -> DeviceConfig:
    """A device profile file, validated."""
    return structure(_read_toml(path), DeviceConfig, str(path))


#: the largest config or profile file read (a config is a few KiB; /dev/zero is endless)
MAX_TOML_BYTES = 1 << 20


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            data = fh.read(MAX_TOML_BYTES + 1)
        if len(data) > MAX_TOML_BYTES:
            raise ConfigError(f"{path}: expected a TOML file of at most {MAX_TOML_BYTES // 1024} KiB")
        return tomllib.loads(data.decode())
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory, expected a TOML file") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: not UTF-8 text ({exc.reason})") from None
    except RecursionError:
        raise ConfigError(f"{path}: invalid TOML: arrays or tables nested too deeply") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None


_SEGMENT = re.compile(r"([^.\[\]]+)((?:\[\d+\])*)")


def parse_key(key: str, where: str) -> list[str | int]:
    """``a.b[1].c`` as a path of table keys and list indices."""
    path: list[str | int] = []
    for segment in key.strip().split("."):
        match = _SEGMENT.fullmatch(segment.strip())
        if not match:
            raise ConfigError(f"{where}: expected dotted.key[index]=value")
        path.append(match.group(1))
        path.extend(int(i) for i in re.findall(r"\d+", match.group(2)))
    return path


def parse_override(text: str) -> tuple[list[str | int], Any]:
    """``a.b[1].c=VALUE``: VALUE is read as a TOML value, or else taken as a bare string."""
    key, sep, value = text.partition("=")
    path = parse_key(key, f"--set {text}")
    if not sep:
        raise ConfigError(f"--set {text}: expected dotted.key=value")
    return path, parse_value(value)


def parse_value(text: str) -> Any:
    """A command-line value: read as TOML (``3``, ``[1, 2]``, ``"a"``), or else taken as a bare string."""
    try:
        return tomllib.loads(f"v = {text.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        return text.strip()
    except RecursionError:
        raise ConfigError(f"{text[:40]}...: a value nested too deeply") from None


def _render(path: list[str | int]) -> str:
    return "".join(f"[{k}]" if isinstance(k, int) else f".{k}" for k in path).lstrip(".")


def apply_override(data: dict[str, Any], path: list[str | int], value: Any, source: str) -> None:
    node: Any = data
    for depth, k in enumerate(path[:-1]):
        nxt = path[depth + 1]
        here = _render(path[: depth + 1])
        if isinstance(k, int):
            if not isinstance(node, list) or not 0 <= k < len(node):
                size = len(node) if isinstance(node, list) else 0
                raise ConfigError(f"{source}: {here}: --set expected an existing list element (there are {size})")
            node = node[k]
        else:
            if not isinstance(node, dict):
                raise ConfigError(f"{source}: {here}: --set expected a table here")
            node = node.setdefault(k, [] if isinstance(nxt, int) else {})
    last = path[-1]
    if isinstance(last, int):
        if not isinstance(node, list) or not 0 <= last < len(node):
            raise ConfigError(f"{source}: {_render(path)}: --set expected an existing list element")
        node[last] = value
    elif isinstance(node, dict):
        node[last] = value
    else:
        raise ConfigError(f"{source}: {_render(path)}: --set expected a table here")


def resolve_profile(name: str, kind: str, config_path: Path) -> Path:
    """A profile name (``configs/<kind>/<name>.toml``) or a path to a TOML file."""
    if name.endswith(".toml") or "/" in name:
        path = Path(name)
        return path if path.is_absolute() else (config_path.parent / path)
    return config_path.parent / kind / f"{name}.toml"


def load_experiment(path: str | Path, overrides: list[str] = (), seed: int | None = None,
                    variant: tuple[str, dict[str, Any]] | None = None) -> Experiment:
    """Read, override and validate a scenario; ``variant`` is (name, dotted key → value) applied last."""
    path = Path(path)
    source = str(path)
    raw = _with_base(path, source)
    for text in overrides:
        keys, value = parse_override(text)
        apply_override(raw, keys, value, f"{source} (--set {text})")
    if variant is not None:
        name, changes = variant
        for key, value in changes.items():
            where = f"{source} (variant {name}: {key})"
            apply_override(raw, parse_key(key, where), value, where)
        source = f"{source} (variant {name})"
    if seed is not None:
        apply_override(raw, ["scenario", "seed"], seed, f"{source} (--seed)")
    scenario = structure(raw, ScenarioConfig, source)
    device_path = _profile_path(scenario.device, "device", path, source)
    device = structure(_merged(_read_toml(device_path), scenario.device_overrides), DeviceConfig,
                       _described(device_path, scenario.device_overrides, "device_overrides"))
    kernel_path = _profile_path(scenario.kernel, "kernel", path, source)
    kernel = structure(_merged(_read_toml(kernel_path), scenario.kernel_overrides), KernelConfig,
                       _described(kernel_path, scenario.kernel_overrides, "kernel_overrides"))
    for key, cpuset in _cpusets(scenario):
        _check_cpuset(cpuset, device, source, key)
    names = [p.name for p in scenario.periodic] + [g.name for g in scenario.load]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConfigError(f"{source}: periodic/load names: expected unique names, {dupes[0]!r} is repeated")
    check_coherent(scenario, kernel, source, lambda: _declared_locks(kernel_path.parent))
    if variant is None:  # what a comparison of the same file and --set would refuse, a run refuses too
        for name, changes in scenario.variants.items():
            load_experiment(path, overrides, variant=(name, changes))
    return Experiment(source=source, config=scenario, device=device, kernel=kernel, raw=raw)


def _declared_locks(kernels: Path) -> set[str]:
    """The names of the locks the kernel profiles in ``kernels`` declare (a file that is not a profile adds
    none: it is refused where it is used)."""
    names: set[str] = set()
    for path in sorted(kernels.glob("*.toml")):
        try:
            locks = _read_toml(path).get("locks", {})
        except ConfigError:
            continue
        if isinstance(locks, dict):
            names.update(locks)
    return names


def _with_base(path: Path, source: str, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """A scenario file, merged over the file its top-level ``base`` names (tables merge, the rest replaces)."""
    raw = _read_toml(path)
    base = raw.pop("base", None)
    if base is None:
        return raw
    if not isinstance(base, str):
        raise ConfigError(f"{path}: base: expected the path of a scenario file, got {base!r}")
    base_path = (path.parent / base).resolve()
    if base_path in seen or base_path == path.resolve():
        raise ConfigError(f"{path}: base: expected a chain of scenario files without a cycle, got {base!r} again")
    if not base_path.is_file():
        raise ConfigError(f"{path}: base: expected a scenario file, got {base!r} (no file {base_path})")
    return _merged(_with_base(base_path, source, seen + (path.resolve(),)), raw)


def _merged(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merged(out[key], value)
        else:
            out[key] = value
    return out


def _described(path: Path, overrides: dict[str, Any], key: str) -> str:
    return f"{path} (with the scenario's {key})" if overrides else str(path)


def _profile_path(name: str, kind: str, config_path: Path, source: str) -> Path:
    path = resolve_profile(name, f"{kind}s", config_path)
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in path.parent.glob("*.toml"))) or "none found"
        raise ConfigError(
            f"{source}: {kind}: expected a {kind} profile name ({known}) or a path to one, "
            f"got {name!r} (no file {path})"
        )
    return path


def _cpusets(sc: ScenarioConfig) -> Iterator[tuple[str, str]]:
    """(key path, cpuset name) of every cpuset the scenario names."""
    for key, thread in sc.threads():
        yield f"{key}.cpuset", thread.cpuset
    if sc.lmkd is not None:
        yield "lmkd.victim_cpuset", sc.lmkd.victim_cpuset


def _check_cpuset(cpuset: str, device: DeviceConfig, source: str, key: str) -> None:
    if cpuset not in device.cpusets:
        known = ", ".join(sorted(device.cpusets))
        raise ConfigError(f"{source}: {key}: expected a cpuset of device {device.name!r} ({known}), got {cpuset!r}")
