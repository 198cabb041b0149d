"""Reap policies: who reaps a killed app's memory besides its own exit (docs/design.md §7)."""

from __future__ import annotations

from attrs import field, frozen

from actors.kernel import Kernel
from actors.oom_reaper import OOM_REAPER_CLASS, OomReaper
from actors.process import Process
from actors.runtime import NS_PER_MS, Runtime
from actors.validators import in_range, non_negative


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


class Reap:
    """``none`` or ``process_mrelease``: what LMKD's reaper threads do after the kill."""

    def __init__(self, mrelease: bool) -> None:
        self.mrelease = mrelease

    def install(self, runtime: Runtime, kernel: Kernel, apps: list[Process]) -> None:
        """Nothing beyond LMKD's own reaper threads."""


class OomReaperReap(Reap):
    """The kernel's oom_reaper reaps every killed app (Shakeel Butt's proposal, docs/domain.md §3.4)."""

    def __init__(self, params: OomReaperParams, threads: int) -> None:
        super().__init__(mrelease=False)
        self.params = params
        self.threads = threads
        self.reaper: OomReaper | None = None

    def install(self, runtime: Runtime, kernel: Kernel, apps: list[Process]) -> None:
        reaper = self.reaper = runtime.add(OomReaper(
            "oom_reaper", kernel, threads=self.threads, delay_ns=round(self.params.delay_ms * NS_PER_MS),
            thread_kw={"policy": "fair", "nice": self.params.nice, "thread_class": OOM_REAPER_CLASS}))
        for app in apps:
            app.watch_kill(reaper.queue)
