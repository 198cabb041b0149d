"""Scheduling domains and when each core balances in each (kernel/sched/topology.c).

A core belongs to a cluster (cores sharing a cache, numbered together). On
big.LITTLE the kernel builds two levels: ``MC``, the core's cluster, whose
groups are its cores, and ``DIE``, the whole system, whose groups are the
clusters. A level of one core (a one-core cluster's MC) or of one group (the
DIE of a one-cluster system) degenerates and is dropped, as
sd_degenerate() drops it. A domain balances every ``weight`` ms
(sd->min_interval, ``balance_ns_per_cpu`` per CPU it spans), a busy core
``busy_factor`` times less often (sd->busy_factor).
"""

from __future__ import annotations

from attrs import frozen


@frozen
class SchedDomain:
    """One level of a core's domains: its name, its groups (core ids), its busy balance interval."""

    name: str
    groups: tuple[tuple[int, ...], ...]
    busy_interval_ns: int

    @property
    def span(self) -> tuple[int, ...]:
        return tuple(cid for group in self.groups for cid in group)


def build_domains(clusters: list[int], balance_ns_per_cpu: int, busy_factor: int) -> list[list[SchedDomain]]:
    """Each core's domains, lowest level first, from the cluster of every core (``clusters[cid]``)."""
    members: dict[int, tuple[int, ...]] = {}
    for cid, cl in enumerate(clusters):
        members[cl] = (*members.get(cl, ()), cid)
    every = tuple(members[cl] for cl in sorted(members))
    per_core: list[list[SchedDomain]] = []
    for cl in clusters:
        levels = []
        own = members[cl]
        if len(own) > 1:
            levels.append(SchedDomain("MC", tuple((c,) for c in own), balance_ns_per_cpu * len(own) * busy_factor))
        if len(every) > 1:
            levels.append(SchedDomain("DIE", every, balance_ns_per_cpu * len(clusters) * busy_factor))
        per_core.append(levels)
    return per_core


def balance_slots(domains: list[list[SchedDomain]], phase_ns: int) -> list[tuple[int, int, int, int]]:
    """``(interval, phase, cid, level)`` of every core's periodic balance in every domain: the cores of a
    domain balance in turn, staggered by interval / cores from ``phase_ns``."""
    ncpus = len(domains)
    slots = []
    for cid, levels in enumerate(domains):
        for level, sd in enumerate(levels):
            interval = sd.busy_interval_ns
            if interval:
                slots.append((interval, phase_ns + interval * cid // ncpus, cid, level))
    return slots
