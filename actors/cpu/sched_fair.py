"""Arithmetic of the fair class (CFS/EEVDF), as small pure functions.

Names and tables follow kernel/sched/core.c and kernel/sched/fair.c so that
the numbers can be checked against the kernel by eye.

Virtual runtime is kept in exact integers: running for ``delta`` ns advances
an entity's vruntime by ``delta * sched_prio_to_wmult[nice]`` (units of
2^-32 weighted ns; the kernel's ``calc_delta_fair`` is the same product
shifted right by 22). Keeping the full product makes the instant at which an
entity reaches its deadline exactly computable, so slice expiry never needs
re-arming for rounding leftovers.
"""

from __future__ import annotations

from typing import Literal

NICE_0_LOAD = 1024

#: kernel/sched/core.c sched_prio_to_weight[40], nice -20 .. 19.
SCHED_PRIO_TO_WEIGHT = (
    88761, 71755, 56483, 46273, 36291,
    29154, 23254, 18705, 14949, 11916,
    9548, 7620, 6100, 4904, 3906,
    3121, 2501, 1991, 1586, 1277,
    1024, 820, 655, 526, 423,
    335, 272, 215, 172, 137,
    110, 87, 70, 56, 45,
    36, 29, 23, 18, 15,
)  # fmt: skip

#: kernel/sched/core.c sched_prio_to_wmult[40] ~ 2^32 / weight (the kernel table, verbatim).
SCHED_PRIO_TO_WMULT = (
    48388, 59856, 76040, 92818, 118348,
    147320, 184698, 229616, 287308, 360437,
    449829, 563644, 704093, 875809, 1099582,
    1376151, 1717300, 2157191, 2708050, 3363326,
    4194304, 5237765, 6557202, 8165337, 10153587,
    12820798, 15790321, 19976592, 24970740, 31350126,
    39045157, 49367440, 61356676, 76695844, 95443717,
    119304647, 148102320, 186737708, 238609294, 286331153,
)  # fmt: skip

Scaling = Literal["none", "log", "linear"]


def nice_to_weight(nice: int) -> int:
    if not -20 <= nice <= 19:
        raise ValueError(f"nice must be in -20..19, got {nice}")
    return SCHED_PRIO_TO_WEIGHT[nice + 20]


def nice_to_wmult(nice: int) -> int:
    if not -20 <= nice <= 19:
        raise ValueError(f"nice must be in -20..19, got {nice}")
    return SCHED_PRIO_TO_WMULT[nice + 20]


def tunable_factor(ncpus: int, scaling: Scaling) -> int:
    """kernel/sched/fair.c get_update_sysctl_factor(): 1, 1+ilog2(n) or n, n capped at 8."""
    cpus = min(ncpus, 8)
    if scaling == "none":
        return 1
    if scaling == "linear":
        return cpus
    return 1 + cpus.bit_length() - 1


def base_slice_ns(base_ns: int, ncpus: int, scaling: Scaling) -> int:
    """sysctl_sched_base_slice after tunable scaling (0.75 ms x 4 = 3 ms on 8 CPUs)."""
    return base_ns * tunable_factor(ncpus, scaling)


def load_sums(entities: list[tuple[int, int]]) -> tuple[int, int]:
    """(Σ w·v, Σ w) of ``(vruntime, weight)`` pairs: the kernel's avg_vruntime terms, exactly."""
    total = 0
    load = 0
    for v, w in entities:
        total += v * w
        load += w
    return total, load


def avg_vruntime(entities: list[tuple[int, int]]) -> int:
    """Load-weighted average vruntime of ``(vruntime, weight)`` pairs (floor)."""
    total, load = load_sums(entities)
    return total // load


def entity_eligible(vruntime: int, total: int, load: int) -> bool:
    """EEVDF eligibility: lag >= 0, i.e. vruntime <= Σ w·v / Σ w, without dividing."""
    return total >= vruntime * load
