"""Does a task fit a core? The fair class's capacity tests on asymmetric (big.LITTLE) CPUs, in its integers.

A task's utilization (PELT, 0..1024) fits a core when it leaves 20% of the
core's capacity spare (``fits_capacity()``, kernel/sched/fair.c: the margin
1280/1024). ``uclamp.min`` asks for a minimum performance level:
``util_fits_cpu()`` says 1 when both fit, -1 when the utilization fits but
the core is slower than the clamp asks, 0 when the utilization does not fit.
A running task that does not fit its core is a *misfit* (rq->misfit_task_load)
as soon as a bigger core is allowed to it, and the load balancer moves it.
"""

from __future__ import annotations

import math

from actors.cpu.pelt import LOAD_AVG_PERIOD, SCHED_CAPACITY_SCALE

#: fits_capacity(): util x CAPACITY_MARGIN < capacity x 1024
CAPACITY_MARGIN = 1280


def fits_capacity(util: int, capacity: int) -> bool:
    """fits_capacity(): ``util`` leaves a fifth of ``capacity`` spare."""
    return util * CAPACITY_MARGIN < capacity * SCHED_CAPACITY_SCALE


def util_fits_cpu(util: int, uclamp_min: int, capacity: int) -> int:
    """util_fits_cpu() without uclamp.max (left at 1024) or thermal pressure: 1 fits, -1 only the
    utilization fits (the core is below ``uclamp_min``), 0 does not fit."""
    if not fits_capacity(util, capacity):
        return 0
    if util < uclamp_min and uclamp_min > capacity:
        return -1
    return 1


def misfit_util(capacity: int) -> int:
    """The least utilization that no longer fits ``capacity``."""
    return -(-capacity * SCHED_CAPACITY_SCALE // CAPACITY_MARGIN)


def periods_to_reach(util: int, target: int, capacity: int) -> int:
    """About how many PELT periods a task at ``util`` must run without a break on a core of ``capacity`` to
    reach ``target`` (it tends to ``capacity`` as ``util x y**n + capacity x (1 - y**n)``): an estimate that
    the caller checks against the signal itself. -1: never (``target`` is not below ``capacity``)."""
    if util >= target:
        return 0
    if target >= capacity:
        return -1
    ratio = (capacity - target) / (capacity - util)
    return math.ceil(-LOAD_AVG_PERIOD * math.log2(ratio))
