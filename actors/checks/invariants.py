"""Invariants every run must keep, checked when it ends (memory conservation is checked at every change).

Each check is a pass over the cores, threads, locks and processes (no cost
per event): CPU time adds up per core, per thread and between the two;
every lock has at most one writer, its readers are the threads holding it,
and nobody waits for a lock that is free; every killed process has exited
or is visibly still exiting; no counter is negative. A violation raises
:class:`InvariantViolation`, naming the invariant, the actor and the virtual
time.
"""

from __future__ import annotations

from typing import Iterable

from actors.cpu.scheduler import IDLE, Scheduler
from actors.kernel.memory import Memory, MemoryAccountingError
from actors.runtime.quantities import NS_PER_MS


class InvariantViolation(RuntimeError):
    """The simulation broke one of its own invariants: a bug in the model, never bad input."""

    def __init__(self, invariant: str, actor: str, t_ns: int, detail: str) -> None:
        self.invariant = invariant
        self.actor = actor
        self.t_ns = t_ns
        self.detail = detail
        super().__init__(f"invariant '{invariant}' broken by {actor} at t={t_ns} ns ({t_ns / NS_PER_MS:.6f} ms): "
                         f"{detail}")

    def __reduce__(self) -> tuple[type, tuple[str, str, int, str]]:
        """Picklable, so that a violation in a worker process reaches the parent."""
        return InvariantViolation, (self.invariant, self.actor, self.t_ns, self.detail)


def check_cpu_time(sched: Scheduler, now: int) -> None:
    """Per core busy + idle = elapsed; per thread run + spin + wait + sleep + idle = its lifetime;
    the threads' run + spin = the cores' busy time."""
    for core in sched.cores:
        busy = sum(core.busy.values())
        if min(core.busy.values(), default=0) < 0 or core.idle_ns < 0 or busy + core.idle_ns != now:
            raise InvariantViolation("CPU-time conservation", f"cpu{core.cid}", now,
                                     f"busy {busy} + idle {core.idle_ns} != elapsed {now} ns")
    on_cpu = 0
    for th in sched.threads:
        parts = (th.run_ns, th.spin_ns, th.wait_ns, th.sleep_ns, th.idle_ns)
        if min(parts) < 0 or th.since != now or sum(parts) != now - th.born:
            raise InvariantViolation("CPU-time conservation", th.name, now,
                                     f"run/spin/wait/sleep/idle {parts} ns != its {now - th.born} ns of life "
                                     f"(or one < 0)")
        on_cpu += th.run_ns + th.spin_ns
    busy = sum(sum(core.busy.values()) for core in sched.cores)
    if on_cpu != busy:
        raise InvariantViolation("CPU-time conservation", sched.name, now,
                                 f"threads ran {on_cpu} ns but the cores were busy {busy} ns")


def check_locks(sched: Scheduler, now: int) -> None:
    """One writer at most, readers are the threads holding the lock, no waiter left behind on a free lock."""
    holders: dict[str, list[str]] = {}
    for th in sched.threads:
        for lock in th.held:
            holders.setdefault(lock.name, []).append(th.name)
    for name, lock in sched.locks.items():
        held_by = holders.get(name, [])
        if lock.owner is not None and (lock.readers or held_by != [lock.owner.name]):
            raise InvariantViolation("lock safety", lock.owner.name, now,
                                     f"{name} owned by {lock.owner.name} but held by {held_by} "
                                     f"with {lock.readers} reader(s)")
        if lock.owner is None and lock.readers != len(held_by):
            raise InvariantViolation("lock safety", sched.name, now,
                                     f"{name} counts {lock.readers} reader(s) but {held_by} hold it")
        if lock.waiters and lock.grantable(lock.waiters[0][1]):
            waiter = lock.waiters[0][0]
            raise InvariantViolation("lock safety", waiter.name, now, f"waits for {name}, which is free (lost wakeup)")
        for waiter, _write, _step in lock.waiters:
            if lock is not waiter.spinning and lock is not waiter.waiting_lock:
                raise InvariantViolation("lock safety", waiter.name, now, f"queued on {name} but not waiting for it")
        if min(lock.acquired, lock.contended, lock.wait_ns, lock.held_ns, lock.transfers) < 0:
            raise InvariantViolation("no negative counter", name, now, "a lock statistic is < 0")


def check_killed(processes: Iterable, now: int) -> None:
    """A killed process has exited, or its thread is still running its exit (or was killed at the end)."""
    for proc in processes:
        if proc.killed_at is None or proc.exited_at is not None:
            continue
        if proc.thread.state == IDLE and proc.thread.program is None and proc.killed_at < now:
            raise InvariantViolation("killed process accounted for", proc.name, now,
                                     f"killed at {proc.killed_at} ns, neither exited nor exiting")


def check_all(sched: Scheduler, memory: Memory, processes: Iterable, now: int) -> None:
    """Every end-of-run invariant; memory conservation is recounted over every process too."""
    check_cpu_time(sched, now)
    check_locks(sched, now)
    check_killed(processes, now)
    try:
        memory.check_all("the end of the run")
    except MemoryAccountingError as exc:
        raise InvariantViolation("memory conservation", "memory", now, str(exc)) from None
