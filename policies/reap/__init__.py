"""The reap axis: who tears down a killed app's memory besides its own exit, and how (docs/design.md §7).

A remedy is a :class:`actors.android.lmkd.ReapPolicy`: ``handle(reaper, victim)``
is what one of lmkd's reaper threads does with a victim lmkd handed it
(with the reaper's own steps: kill, reprioritise, process_mrelease), and
``install(runtime, kernel, apps)`` adds what else the remedy needs (the
oom_reaper kthread). ``make(params)`` builds it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from policies.registry import Axis, discover

if TYPE_CHECKING:
    from actors.kernel.kernel import Kernel
    from actors.kernel.process import Process
    from actors.runtime.actor import Runtime

REAP = Axis("reap", default="process_mrelease")


class ReaperRemedy:
    """A reap remedy that is only what lmkd's reaper threads do (``handle``): no parameters, nothing to
    install."""

    def __init__(self, params: None = None) -> None:
        pass

    def install(self, runtime: Runtime, kernel: Kernel, apps: list[Process]) -> None:
        """Nothing beyond lmkd's own reaper threads."""

discover(__name__, __path__)
