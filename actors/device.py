"""A simulated device assembled in one place: its CPU scheduler, its memory, its kernel and kswapd.

The lab (``exitstorm.lab.world``), the tests and the benchmarks all build a
device with :func:`build_device`, so the hooks between the parts (memory
under its low watermark wakes kswapd) are connected once, here, and a
device without kswapd is a choice made here rather than a hook unset later.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

from attrs import define

from actors.cpu.scheduler import CoreSpec, SchedTunables, Scheduler
from actors.cpu.timeline import Timeline
from actors.kernel.kernel import KSWAPD_CLASS, Kernel, Kswapd
from actors.kernel.memory import Memory
from actors.kernel.oom_kill import OomKiller
from actors.kernel.oom_reaper import OOM_REAPER_CLASS, OomReaper
from actors.kernel.process import Process
from actors.kernel.profiles import DeviceCosts, KernelProfile
from actors.runtime.actor import Runtime


@define
class Device:
    scheduler: Scheduler
    memory: Memory
    kernel: Kernel
    kswapd: Kswapd | None


def build_device(runtime: Runtime, cores: list[CoreSpec], tunables: SchedTunables, *, total_pages: int,
                 kernel_pages: int, watermark_scale_factor: int, zram_pages: int, profile: KernelProfile,
                 costs: DeviceCosts, kswapd_thread: dict[str, Any] | None, scheduler_name: str = "scheduler",
                 wq_unbound_cpumask: list[int] | None = None, oom_reaper_cpus: list[int] | None = None,
                 timeline: Timeline | None = None) -> Device:
    """The scheduler (a participant of ``runtime``), the memory, the kernel (its unbound workqueues on
    ``wq_unbound_cpumask`` and its oom_reaper on ``oom_reaper_cpus``, all CPUs by default) and, unless
    ``kswapd_thread`` is None, kswapd0 on a thread of those scheduling keywords (class ``kswapd`` unless they
    say another; all CPUs unless its ``cpus`` say which), woken when free memory falls under low."""
    scheduler = runtime.add(Scheduler(scheduler_name, cores, tunables, timeline=timeline))
    memory = Memory(total_pages, kernel_pages, watermark_scale_factor, zram_pages, scheduler)
    every = list(range(len(cores)))
    kernel = Kernel(scheduler, memory, profile, costs,
                    wq_unbound_cpumask=every if wq_unbound_cpumask is None else wq_unbound_cpumask,
                    oom_reaper_cpus=every if oom_reaper_cpus is None else oom_reaper_cpus)
    kswapd = None
    if kswapd_thread is not None:
        kswapd = kernel.kswapd = runtime.add(Kswapd("kswapd0", kernel, {"thread_class": KSWAPD_CLASS,
                                                                        **kswapd_thread}))
        memory.low.connect(kernel.wakeup_kswapd)
    return Device(scheduler, memory, kernel, kswapd)


def add_oom_killer(runtime: Runtime, kernel: Kernel, candidates: Callable[[], Sequence[Process]], *,
                   reaper_delay_ns: int, reaper_nice: int,
                   on_kill: Callable[[Process, str, int, str], None] | None = None) -> OomKiller:
    """The kernel's OOM killer over ``candidates()``, and the oom_reaper kthread its victims go to: the one a
    reap policy already runs, else mainline's single kthread at ``reaper_nice``. Call once the policies are
    installed and before the run starts (the kthread is an actor)."""
    if kernel.oom_reaper is None:
        kernel.oom_reaper = OomReaper(runtime, "oom_reaper", kernel, threads=1, delay_ns=reaper_delay_ns,
                                      thread_kw={"policy": "fair", "nice": reaper_nice,
                                                 "thread_class": OOM_REAPER_CLASS})
    memory = kernel.memory
    kernel.oom_killer = OomKiller(candidates, kernel.oom_reaper, memory.total + memory.swap_total,
                                  ptes_per_table=kernel.profile.exit.ptes_per_table,
                                  retry_ns=kernel.scheduler.tick_ns, reaper_delay_ns=reaper_delay_ns,
                                  on_kill=on_kill)
    return kernel.oom_killer
