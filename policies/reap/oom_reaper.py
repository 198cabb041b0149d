"""The kernel's oom_reaper reaps every killed app (Shakeel Butt's proposal, docs/domain.md §3.4), with one
kthread or with several."""

from __future__ import annotations

from attrs import field, frozen

from actors.android.lmkd import LmkdReaper
from actors.kernel.kernel import Kernel
from actors.kernel.oom_reaper import OOM_REAPER_CLASS, OomReaper
from actors.kernel.process import Process
from actors.runtime.actor import Runtime
from actors.runtime.quantities import InNs
from actors.runtime.validators import in_range, non_negative
from policies.reap import REAP


@frozen
class OomReaperParams:
    """The oom_reaper kthread(s) when they reap SIGKILLed and cgroup-killed tasks.

    ``delay_ms`` is how long a victim waits on the list before it is reaped
    (the kernel's OOM_REAPER_DELAY is 2 s for OOM victims; a reaper for
    userspace kills would start at once). ``parallel_threads`` is the thread
    count of the parallel variant.
    """

    delay_ms: float = field(validator=non_negative)
    nice: int = field(validator=in_range(-20, 19))
    parallel_threads: int = field(validator=in_range(1, 64))

    delay_ns = InNs("delay_ms")


class OomReaperReap:
    """Every killed app is queued for the oom_reaper; lmkd's reaper threads only kill and reprioritise."""

    def __init__(self, params: OomReaperParams, threads: int) -> None:
        self.params = params
        self.threads = threads
        self.reaper: OomReaper | None = None

    def install(self, runtime: Runtime, kernel: Kernel, apps: list[Process]) -> None:
        reaper = self.reaper = kernel.oom_reaper = OomReaper(
            runtime, "oom_reaper", kernel, threads=self.threads, delay_ns=self.params.delay_ns,
            thread_kw={"policy": "fair", "nice": self.params.nice, "thread_class": OOM_REAPER_CLASS})
        for app in apps:
            app.killed.connect(reaper.queue)

    async def handle(self, reaper: LmkdReaper, victim: Process) -> None:
        await reaper.kill(victim)
        await reaper.reprioritise(victim)


@REAP.register("oom_reaper", params=OomReaperParams)
def oom_reaper(params: OomReaperParams) -> OomReaperReap:
    return OomReaperReap(params, threads=1)


@REAP.register("parallel_oom_reaper", params=OomReaperParams, table="oom_reaper")
def parallel_oom_reaper(params: OomReaperParams) -> OomReaperReap:
    return OomReaperReap(params, threads=params.parallel_threads)
