"""Leaving an idle state: the wake-up latency a thread pays when it is placed on an idle core.

A core with nothing to run enters an idle state (cpuidle). A thread woken or
moved onto it runs only once the core has left that state, its exit latency
later (the device tree's ``exit-latency-us``, the cpuidle driver's
``exit_latency``). The core is taken from the instant of the wake-up (the
runqueue is no longer empty, so placement does not pick it again), but the
thread makes no progress and the time is the core's idle time and the
thread's wait.

Which state the core is in is the cpuidle governor's choice when the core
goes idle: the deepest state whose target residency (``min-residency-us``)
the predicted idle stretch covers. The model's governor predicts right: it
picks the deepest state whose target residency the stretch actually lasted
(the menu and teo governors aim for this; a real one sometimes goes too
shallow or too deep). A stretch shorter than every target residency, such as
a switch from one thread to the next, costs nothing.
"""

from __future__ import annotations

from typing import Sequence

#: ``(target residency ns, exit latency ns)`` of a core's idle states, shallowest first
IdleStates = Sequence[tuple[int, int]]


def exit_latency_ns(states: IdleStates, idle_ns: int) -> int:
    """How long leaving idle takes after ``idle_ns`` idle: the exit latency of the deepest state whose target
    residency the stretch covered (0 if it covered none)."""
    latency = 0
    for residency_ns, exit_ns in states:
        if idle_ns < residency_ns:
            break
        latency = exit_ns
    return latency
