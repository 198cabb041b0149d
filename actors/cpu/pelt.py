"""PELT, the kernel's per-entity load tracking of utilization (kernel/sched/pelt.c), in closed form.

The kernel keeps ``util_avg`` for each task and each runqueue as a
geometric series over 1024 µs periods (1024 × 1024 ns, the clock shifted by
10) with ``y**32 == 1/2``: a period's running time counts fully now, half
as much 32 periods later. Here it is made invariant as kernels before 5.1
did: running a whole period on a core of capacity ``c`` (of 1024) adds
``c``'s worth, so a task that never stops on a little core settles at that
core's capacity. Between two events the scheduler already has, a signal
only decays or only accrues, so the series has a closed form and needs no
tick:

    util(t + d) = util(t) * y**(d / period) + running * capacity * (1 - y**(d / period))

Simplifications, against the kernels Android runs (5.10 on; docs/model.md):

* since 5.1 the kernel scales time rather than the contribution
  (``rq_clock_pelt`` runs at the core's capacity while the core is busy and
  catches up with real time when it idles); the two agree over any stretch
  in which the core idles now and then, but a task that never lets its core
  idle reaches 1024 there on any core, where here it stays at the core's
  capacity;
* the kernel accrues whole periods in integers and carries the partial one
  (``period_contrib``); the closed form treats time as continuous, which
  differs by less than one period's contribution (about 2% of the capacity).
"""

from __future__ import annotations

import math

#: PELT's period: 1024 units of the clock shifted by 10 (1024 ns), kernel/sched/pelt.c
PELT_PERIOD_NS = 1024 * 1024
#: periods in which a contribution halves (y**32 == 1/2; LOAD_AVG_PERIOD)
LOAD_AVG_PERIOD = 32


def decay(d_ns: int) -> float:
    """y**(d / period): the weight left after ``d_ns``."""
    return math.exp2(-d_ns / (PELT_PERIOD_NS * LOAD_AVG_PERIOD))


def advance(util: float, d_ns: int, capacity: int) -> float:
    """The signal ``d_ns`` later, running all along at ``capacity`` (0: not running)."""
    if d_ns <= 0:
        return util
    left = decay(d_ns)
    return util * left + capacity * (1.0 - left)
