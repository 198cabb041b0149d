"""PELT, the kernel's per-entity load tracking of utilization (kernel/sched/pelt.c), in its integers.

The kernel keeps ``util_avg`` for each task and each runqueue as a
geometric series over periods of 1024 units of its clock shifted by 10
(1024 × 1024 ns), with ``y**32 == 1/2``: a period's running time counts
fully now, half as much 32 periods later. ``util_sum`` is decayed with the
fixed-point table ``runnable_avg_yN_inv`` (sched-pelt.h), the partial
period is carried in ``period_contrib``, and ``util_avg`` is ``util_sum``
over the series' maximum, recomputed when a period boundary is crossed.
This module does the same arithmetic (``accumulate_sum``, ``decay_load``,
``__accumulate_pelt_segments``), in Python's integers, so a signal is the
kernel's to the unit and the same on every machine. It needs no tick: the
scheduler updates a signal at the switches it already makes, and between
two of them a signal only decays or only accrues.

Invariance is made as kernels before 5.1 made it: a running period adds its
contribution times the core's capacity (of 1024), so a task that never
stops on a little core settles at that core's capacity. Since 5.1 the
kernel scales time instead (``rq_clock_pelt`` runs at the core's capacity
while the core is busy and catches up with real time when it idles): the
two agree over any stretch in which the core idles now and then, but a task
that never lets its core idle reaches 1024 there on any core, where here it
stays at the core's capacity (docs/model.md).
"""

from __future__ import annotations

#: periods in which a contribution halves (y**32 == 1/2)
LOAD_AVG_PERIOD = 32
#: the series' maximum, 1024 × (1 + y + y**2 + ...) in the kernel's integers
LOAD_AVG_MAX = 47742
#: a period: 1024 units of the clock shifted by 10
PELT_PERIOD_NS = 1024 << 10
#: capacities and utilizations on the kernel's 0..1024 scale
SCHED_CAPACITY_SHIFT = 10
SCHED_CAPACITY_SCALE = 1 << SCHED_CAPACITY_SHIFT
#: y**n × 2**32 for n < 32 (kernel/sched/sched-pelt.h)
RUNNABLE_AVG_YN_INV = (
    0xffffffff, 0xfa83b2da, 0xf5257d14, 0xefe4b99a, 0xeac0c6e6, 0xe5b906e6,
    0xe0ccdeeb, 0xdbfbb796, 0xd744fcc9, 0xd2a81d91, 0xce248c14, 0xc9b9bd85,
    0xc5672a10, 0xc12c4cc9, 0xbd08a39e, 0xb8fbaf46, 0xb504f333, 0xb123f581,
    0xad583ee9, 0xa9a15ab4, 0xa5fed6a9, 0xa2704302, 0x9ef5325f, 0x9b8d39b9,
    0x9837f050, 0x94f4efa8, 0x91c3d373, 0x8ea4398a, 0x8b95c1e3, 0x88980e80,
    0x85aac367, 0x82cd8698,
)  # fmt: skip


def decay_load(val: int, n: int) -> int:
    """decay_load(): ``val × y**n``, as the kernel rounds it."""
    if n > LOAD_AVG_PERIOD * 63:
        return 0
    if n >= LOAD_AVG_PERIOD:
        val >>= n // LOAD_AVG_PERIOD
        n %= LOAD_AVG_PERIOD
    return (val * RUNNABLE_AVG_YN_INV[n]) >> 32


def accumulate_pelt_segments(periods: int, d1: int, d3: int) -> int:
    """__accumulate_pelt_segments(): the rest of the first period (decayed), the full periods, the start of
    the current one."""
    c1 = decay_load(d1, periods)
    c2 = LOAD_AVG_MAX - decay_load(LOAD_AVG_MAX, periods) - 1024
    return c1 + c2 + d3


class SchedAvg:
    """struct sched_avg, its utilization part: one entity's (a task's or a runqueue's) util_sum, util_avg and
    where its series stands."""

    __slots__ = ("last_update", "util_sum", "period_contrib", "util_avg")

    def __init__(self, now_ns: int) -> None:
        self.last_update = now_ns
        self.util_sum = 0
        self.period_contrib = 0
        self.util_avg = 0

    def _accrue(self, now_ns: int, capacity: int) -> tuple[int, int, int, int]:
        """___update_load_sum() and ___update_load_avg() at ``now_ns``, unapplied: the ``(last_update, util_sum,
        period_contrib, util_avg)`` they leave (util_avg is recomputed only when a period boundary is crossed)."""
        delta = (now_ns - self.last_update) >> 10
        if delta <= 0:
            return self.last_update, self.util_sum, self.period_contrib, self.util_avg
        last_update = self.last_update + (delta << 10)
        contrib = delta
        delta += self.period_contrib
        periods = delta >> 10
        if not periods:  # within the current period: only its running time adds
            return last_update, self.util_sum + contrib * capacity, delta, self.util_avg
        util_sum = decay_load(self.util_sum, periods)
        delta &= 1023
        if capacity:
            util_sum += accumulate_pelt_segments(periods, 1024 - self.period_contrib, delta) * capacity
        return last_update, util_sum, delta, util_sum // (LOAD_AVG_MAX - 1024 + delta)

    def update(self, now_ns: int, capacity: int) -> None:
        """Update the signal at ``now_ns``: running since the last update on a core of ``capacity`` (0: not
        running)."""
        self.last_update, self.util_sum, self.period_contrib, self.util_avg = self._accrue(now_ns, capacity)

    def util_at(self, now_ns: int, capacity: int) -> int:
        """util_avg as an update at ``now_ns`` would leave it (this signal unchanged)."""
        return self._accrue(now_ns, capacity)[3]
