"""The virtual CPU of one device: cores, threads, locks, and work programs.

One participant (no task, no mailbox) models all cores. It never wakes a
trio task on its hot path: work programs run as event callbacks of the
runtime, and the owning actor is resumed only when its whole program is
done (or gets its WorkDone as a message).

Scheduling model (docs/design.md §4):

* **SCHED_FIFO** threads are placed as select_task_rq_rt() places them: a
  waking FIFO thread stays on its previous core unless an RT thread runs
  there, else takes an idle allowed core, else preempts the lowest-ranked
  allowed core (a fair thread first, else the lowest-priority, most recently
  woken FIFO thread), else waits in priority order. One that must wait for a
  fair thread's preemption point waits on that core; another core takes it
  only as pull_rt_task() would. A preempted FIFO thread keeps its place.
* **Fair** threads (CFS/EEVDF) live on per-core run queues. Each has a
  vruntime, a virtual deadline one base slice ahead, and is eligible when its
  lag is non-negative; the core runs the eligible thread with the earliest
  deadline. Wakeup placement is select_idle_sibling()'s: the previous core
  if idle, then any idle allowed core, else the previous core again (the
  wakee keeps its cache; the least loaded core only for a thread that never
  ran or may no longer run there). An idle core pulls the longest-waiting
  queued thread it may run (newly-idle balance); with a balance interval,
  each core balances each of its scheduling domains periodically
  (``topology``), ``busy_factor`` times less often than the interval,
  staggered, pulling queued threads from the most loaded core while that
  narrows the gap in weight. Wakeup preemption and RUN_TO_PARITY are
  tunables.
* On **asymmetric capacities** (big.LITTLE) placement and balancing look at
  whether a task's PELT utilization fits a core (``capacity``): energy-aware
  placement while no core is overutilized, else select_idle_capacity();
  a newly idle core pulls from its own cluster first; a running task that
  stops fitting its core is a misfit and moves to an idle bigger core at the
  next tick, or to the first bigger core that goes idle (docs/model.md).
* A thread put on an **idle core** runs once the core has left its idle
  state (``idle_states``): the core is taken at once, the thread waits.
* **Spinlocks** and **rwlocks** keep their waiters on-core, burning CPU,
  FIFO (queued locks); holders and spinners are not preemptible. **Mutexes**
  and **rwsems** put waiters to sleep and hand the lock to the first waiter
  (or the run of readers at the head) on unlock. Readers share; a newcomer
  reader queues behind a waiting writer. A **line** is a shared cache line
  (atomic counters): never waited for, but accessing it costs transfers.
* **Coherence** (the Universal Scalability Law's coherence term): an access
  to a lock's or line's cache lines costs one transfer for each *other* CPU
  that has touched them since this CPU last began to (holding or spinning on
  the lock, or inside a step touching the line, counts as touching it all
  along). At least one transfer is paid when another CPU touched them last.
  The cost is burnt inside the critical section that makes the access, so
  under contention hold times lengthen and a lock's throughput falls as CPUs
  are added; a yes/no "someone else touched it" cost would saturate at two
  CPUs.
* Preemption requested while a thread cannot be preempted (holding or
  spinning on a spinlock, or running zero-time steps) happens as soon as it
  can: at the unlock that drops its last spinlock (preempt_enable() under
  CONFIG_PREEMPT, as GKI builds) or at its next time-consuming step.
* **Preemption model** (``SchedTunables.preempt``): under ``full`` the above;
  under ``none`` kernel code (a step that is not ``user``) is preempted only
  at a :class:`CondResched` step or when it returns to user work, however
  urgent the waker (a SCHED_FIFO one included); ``voluntary`` also lets it
  happen where kernel code may sleep (taking a mutex or rwsem). With a tick
  (``tick_ns``), a fair slice that runs out is noticed at the next tick, as
  the kernel's scheduler_tick() does without HRTICK.
* Work is expressed in ns at capacity 1.0. Capacities are kept, like the
  kernel's, on a 0..1024 scale, and remaining work in ns x 1024, so that
  progress on any core is exact integer arithmetic.
"""

from __future__ import annotations

import collections
import random
from bisect import insort
from heapq import heappush
from operator import attrgetter
from typing import Any, Callable, Iterable, Literal

from attrs import frozen

from actors.cpu import pelt, sched_fair, topology
from actors.cpu.capacity import misfit_util, periods_to_reach, util_fits_cpu
from actors.cpu.idle_states import IdleStates, exit_latency_ns
from actors.cpu.interrupts import IRQ_CLASS, TickInterrupts
from actors.cpu.pelt import SCHED_CAPACITY_SCALE, SCHED_CAPACITY_SHIFT
from actors.cpu.timeline import Timeline
from actors.cpu.work import (Compute, CondResched, Frame, Lock, Marker, Sleep, SleepUntil, Step, Unlock, WorkDone,
    unfolded)
from actors.runtime.actor import Actor, Participant, Signal

Policy = Literal["fifo", "fair"]
LockKind = Literal["spin", "mutex", "rwlock", "rwsem", "line"]
#: CONFIG_PREEMPT_NONE / _VOLUNTARY / CONFIG_PREEMPT: where kernel code may be preempted
Preempt = Literal["none", "voluntary", "full"]

#: Frame appended to the caller's stack while a thread spins on a contended spinlock.
SPIN_FRAME = "queued_spin_lock_slowpath"

IDLE, RUNNABLE, RUNNING, BLOCKED = 0, 1, 2, 3
#: a CPU's touch of a lock that is still going on (holding or spinning): later than any time
ONGOING = 1 << 62
#: a CPU that never touched a lock
NEVER = -1
#: a core without modelled interrupts: its next one is later than any time
NO_IRQ = 1 << 62

_rt_key = attrgetter("rt_key")


def _core_util(core: "Core", now: int) -> int:
    """A core's runqueue utilization at ``now`` (it accrues while the core runs something)."""
    return core.util.util_at(now, core.capacity if core.curr is not None else 0)


def contenders(cpu: int, since: list[int], until: list[int], last_cpu: int) -> int:
    """Transfers one access by ``cpu`` pays: the other CPUs that touched the lines after ``cpu`` last began to
    (``until[d]``, ONGOING while they hold, spin or touch, is later than ``since[cpu]``); at least one when
    another CPU touched them last.

    The count is per CPU, not per access, so a step standing for a page table of entries counts what the
    entries would, whatever the step's length: the result does not depend on the model's chunking.
    """
    mine = since[cpu]
    k = 0
    for d, end in enumerate(until):
        if d != cpu and end > mine:
            k += 1
    if not k and last_cpu != cpu and last_cpu != NEVER:
        return 1
    return k


def _account_parts(stack_ns: dict[str, int], step: Compute, dt: int) -> None:
    """Split ``dt`` of a multi-frame step across its frames by their share of its work."""
    parts = step.stack_parts
    total = step.ns
    rest = dt
    for stack, ns in parts[1:]:
        share = dt * ns // total
        stack_ns[stack] = stack_ns.get(stack, 0) + share
        rest -= share
    stack = parts[0][0]
    stack_ns[stack] = stack_ns.get(stack, 0) + rest


class SchedulerError(RuntimeError):
    """A work program did something the kernel would BUG() on."""


@frozen
class CoreSpec:
    capacity: float
    #: the cores of a cluster share a cache and form the lowest scheduling domain (topology.build_domains)
    cluster: int = 0
    #: ``(target residency ns, exit latency ns)`` of the core's idle states, shallowest first (idle_states)
    idle_states: tuple[tuple[int, int], ...] = ()


@frozen
class CpuGroup:
    """A thread's cpu cgroup attributes that placement reads: ``cpu.uclamp.min`` (0..1024) and Android's
    ``cpu.uclamp.latency_sensitive`` (prefer an idle core)."""

    uclamp_min: int = 0
    latency_sensitive: bool = False


NO_GROUP = CpuGroup()


@frozen
class SchedTunables:
    base_slice_ns: int
    tunable_scaling: sched_fair.Scaling
    run_to_parity: bool
    wakeup_preemption: bool
    #: where kernel code may be preempted: anywhere outside spinlocks ("full") or only at cond_resched()
    preempt: Preempt = "full"
    #: the scheduler tick (1 s / HZ): a fair slice's end is noticed at the next tick; 0 notices it at once
    tick_ns: int = 0
    #: a scheduling domain's balance interval per CPU it spans (sd->min_interval); 0: no periodic balance
    balance_ns_per_cpu: int = 0
    #: a busy core balances this many times less often (sd->busy_factor)
    busy_factor: int = 1
    #: energy-aware scheduling (an energy model, asymmetric capacities): placement by fit while no core is
    #: overutilized, and no load balancing then
    energy_aware: bool = False
    #: the tick interrupt's duration on a busy core, drawn per tick uniform in [min, max] ns (0: none)
    tick_irq_min_ns: int = 0
    tick_irq_max_ns: int = 0


def tick_ceil(t_ns: int, tick_ns: int, phase_ns: int = 0) -> int:
    """The first tick at or after ``t_ns`` (ticks at ``phase_ns`` + multiples of ``tick_ns``; 0: no tick)."""
    if not tick_ns:
        return t_ns
    return phase_ns - (-(t_ns - phase_ns) // tick_ns) * tick_ns


class KLock:
    """A kernel lock (or a shared cache line) and its statistics.

    ``spin`` and ``rwlock`` waiters spin on their core; ``mutex`` and
    ``rwsem`` waiters sleep. ``rwlock``/``rwsem`` readers share the lock; a
    ``line`` is a cache line that every "acquisition" only reads-for-ownership
    (atomic counters, a reader-side lock word): it never excludes anybody.
    Each of the ``count`` kernel acquisitions a step stands for costs
    ``transfer_ns`` per contending CPU (:func:`contenders`); ``since`` and
    ``until`` are, per CPU, when its last touch began and ended.
    """

    __slots__ = (
        "name", "kind", "spins", "transfer_ns", "owner", "readers", "waiters", "last_cpu", "since", "until",
        "hold_since", "acquired", "contended", "held_ns", "wait_ns", "transfers",
    )  # fmt: skip

    def __init__(self, name: str, kind: LockKind, transfer_ns: int, ncpus: int = 1) -> None:
        self.name = name
        self.kind = kind
        self.spins = kind in ("spin", "rwlock", "line")
        self.transfer_ns = transfer_ns
        self.owner: Thread | None = None
        self.readers = 0
        self.waiters: collections.deque[tuple[Thread, bool, Lock]] = collections.deque()
        self.last_cpu = NEVER
        self.since = [NEVER] * ncpus
        self.until = [NEVER] * ncpus
        self.hold_since = 0
        self.acquired = 0
        self.contended = 0
        self.held_ns = 0
        self.wait_ns = 0
        self.transfers = 0

    def grantable(self, write: bool) -> bool:
        """May a newcomer take it now? Readers queue behind a waiting writer."""
        if self.owner is not None:
            return False
        if write:
            return self.readers == 0
        return self.kind == "line" or not any(w for _, w, _ in self.waiters)


class Thread:
    """A schedulable thread of an actor. Mutable state is owned by the scheduler."""

    __slots__ = (
        "tid", "name", "owner", "fair", "prio", "weight", "wmult", "vslice",
        "cores", "mask", "thread_class", "on_marker",
        "state", "since", "core", "last_core", "program", "pending", "on_done", "remaining", "stack", "multi",
        "debt", "debt_stack", "run",
        "step_user", "kill_pending", "spinning", "spin_since", "waiting_lock",
        "preempt_count", "held", "sleep_gen", "rt_key", "rt_core", "vruntime", "deadline", "vlag", "nice", "born",
        "run_ns", "wait_ns", "spin_ns", "sleep_ns", "idle_ns", "wakeups", "preemptions", "stack_ns",
        "util", "ran_on", "uclamp_min", "latency_sensitive", "misfit", "stint",
    )  # fmt: skip

    def __repr__(self) -> str:
        return f"Thread({self.name!r}, tid={self.tid})"


class Core:
    __slots__ = (
        "cid", "capacity", "curr", "seg_start", "on_since", "gen", "queue", "vclock",
        "protect", "sliced", "need_resched", "dispatching", "busy", "idle_ns", "util", "cluster", "irq", "irq_at",
        "idle_states", "idle_min", "idle_since", "exit_until",
    )  # fmt: skip

    def __init__(self, cid: int, capacity: int, cluster: int = 0, idle_states: IdleStates = ()) -> None:
        self.cid = cid
        self.capacity = capacity
        self.cluster = cluster
        self.curr: Thread | None = None
        self.seg_start = 0
        self.on_since = 0  # when the current thread was switched in
        self.gen = 0
        self.queue: list[Thread] = []
        self.vclock = 0
        self.protect = False
        self.sliced = False
        self.need_resched = False
        self.dispatching = False
        self.busy: dict[str, int] = {}
        self.idle_ns = 0
        #: the runqueue's PELT utilization: its own running history, what the kernel's rq util_avg is while no
        #: task migrates (the kernel moves a migrating task's whole signal)
        self.util = pelt.SchedAvg(0)
        #: the tick interrupts' windows (None: none modelled) and where the first pending one starts, or from
        #: where the core is still leaving idle: the accounting's and the segments' slow path starts there
        self.irq: TickInterrupts | None = None
        self.irq_at = NO_IRQ
        #: the idle states, the shortest stretch that enters one (NO_IRQ: none), when the core last went idle,
        #: and until when it is leaving its idle state for the thread it was given
        self.idle_states = tuple(idle_states)
        self.idle_min = idle_states[0][0] if idle_states else NO_IRQ
        self.idle_since = 0
        self.exit_until = 0


class Scheduler(Participant):
    """Executes work programs on cores; see the module docstring for the model."""

    def __init__(
        self,
        name: str,
        cores: Iterable[CoreSpec],
        tunables: SchedTunables,
        timeline: Timeline | None = None,
    ) -> None:
        super().__init__(name)
        specs = list(cores)
        if not specs:
            raise ValueError("a device needs at least one core")
        self.cores = [
            Core(i, round(s.capacity * SCHED_CAPACITY_SCALE), s.cluster, s.idle_states) for i, s in enumerate(specs)
        ]
        for core in self.cores:
            if core.capacity <= 0:
                raise ValueError(f"core {core.cid} capacity must be > 0")
        #: sched_asym_cpucap_active(): cores differ in capacity, so placement and balancing look at fit
        self.asym = len({core.capacity for core in self.cores}) > 1
        if tunables.energy_aware and not self.asym:
            raise ValueError("energy-aware scheduling needs cores of different capacities")
        self.eas = tunables.energy_aware
        #: each core's scheduling domains, lowest first, and every (core, domain)'s periodic balance
        self.domains = topology.build_domains([s.cluster for s in specs], tunables.balance_ns_per_cpu,
                                              tunables.busy_factor)
        self._cluster_of = [tuple(c for c in self.cores if c.cluster == core.cluster) for core in self.cores]
        self.tunables = tunables
        if tunables.preempt not in ("none", "voluntary", "full"):
            raise ValueError(f"unknown preemption model {tunables.preempt!r}")
        #: kernel code runs on to a cond_resched() (CONFIG_PREEMPT_NONE / _VOLUNTARY)
        self._kernel_runs_on = tunables.preempt != "full"
        self._might_resched = tunables.preempt == "voluntary"
        self.tick_ns = tunables.tick_ns
        #: cores balance each domain in turn, staggered from ``balance_phase_ns`` (drawn within this range)
        intervals = [sd.busy_interval_ns for levels in self.domains for sd in levels]
        self._balance_step_ns = max(intervals, default=0) // len(specs)
        self.balance_phase_ns = 0
        self._slots = topology.balance_slots(self.domains, 0)
        #: where the tick's period starts (a run does not start when the machine booted: see draw_phases)
        self.tick_phase_ns = 0
        self._balance_next = 0
        self._balance_armed = False
        self.slice_ns = sched_fair.base_slice_ns(tunables.base_slice_ns, len(self.cores), tunables.tunable_scaling)
        #: ``(thread, ns)`` each time a thread gets a core: how long it waited runnable
        self.delayed = Signal("scheduler.delayed")
        #: slices and lock waits for the run's trace (off: a timeline with no room)
        self.timeline = timeline if timeline is not None else Timeline(0)
        self.threads: list[Thread] = []
        self.locks: dict[str, KLock] = {}
        self._rtq: list[Thread] = []
        self._rt_seq = 0
        #: threads runnable or running; ``active_changing`` is emitted just before it changes
        self.nr_active = 0
        self.active_changing = Signal("scheduler.active_changing")
        self._trace = False
        self._trace_locks = False
        self._on_segment_end = self._segment_end  # bound once: it goes with every segment onto the heap

    # -- set-up --------------------------------------------------------------
    def on_start(self) -> None:
        self._heap, self._seq = self.runtime.event_queue()  # segment ends are never in the past
        self._trace = self.runtime.events.is_on("sched")
        self._trace_locks = self.runtime.events.is_on("lock")

    def draw_phases(self) -> None:
        """Run-to-run variation: where the run starts in the tick's and the load balancer's periods, from this
        actor's own random stream (call once it is added to the runtime)."""
        if self.tick_ns:
            self.tick_phase_ns = self.rng.randrange(self.tick_ns)
        if self._balance_step_ns:
            self.balance_phase_ns = self.rng.randrange(self._balance_step_ns)
            self._slots = topology.balance_slots(self.domains, self.balance_phase_ns)
        self.start_tick_interrupts()

    def start_tick_interrupts(self) -> None:
        """Each core's tick-interrupt windows from the tick's phase, each core's durations from its own stream
        (drawn from this actor's); none without a tick or with a zero duration."""
        tun = self.tunables
        if self.tick_ns and tun.tick_irq_max_ns:
            for core in self.cores:
                core.irq = TickInterrupts(self.tick_ns, self.tick_phase_ns, tun.tick_irq_min_ns, tun.tick_irq_max_ns,
                                          random.Random(self.rng.getrandbits(64)))
                core.irq_at = core.irq.first_start()

    def add_lock(self, name: str, kind: LockKind, transfer_ns: int = 0) -> KLock:
        if kind not in ("spin", "mutex", "rwlock", "rwsem", "line"):
            raise ValueError(f"unknown lock kind {kind!r}")
        if name in self.locks:
            raise ValueError(f"duplicate lock {name!r}")
        if transfer_ns < 0 or (transfer_ns and kind in ("mutex", "rwsem")):
            raise ValueError(f"lock {name!r}: cache-line transfer cost applies to spinning kinds and lines only")
        lock = self.locks[name] = KLock(name, kind, transfer_ns, len(self.cores))
        return lock

    def spawn(
        self,
        name: str,
        owner: Actor | None,
        policy: Policy = "fair",
        *,
        prio: int = 0,
        nice: int = 0,
        cpus: Iterable[int] | None = None,
        thread_class: str = "other",
        on_marker: Callable[[Thread, str, Any], None] | None = None,
        last_cpu: int | None = None,
        group: CpuGroup = NO_GROUP,
    ) -> Thread:
        if policy not in ("fifo", "fair"):
            raise ValueError(f"unknown scheduling policy {policy!r}")
        if policy == "fifo" and not 1 <= prio <= 99:
            raise ValueError(f"SCHED_FIFO priority must be in 1..99, got {prio}")
        th = Thread()
        th.tid = len(self.threads)
        th.name = name
        th.owner = owner
        th.fair = policy == "fair"
        th.prio = prio
        self._set_nice(th, nice)
        self._set_cpus(th, range(len(self.cores)) if cpus is None else cpus)
        th.thread_class = thread_class
        th.on_marker = on_marker
        th.uclamp_min = group.uclamp_min
        th.latency_sensitive = group.latency_sensitive
        #: running where it does not fit while a bigger core is allowed (rq->misfit_task_load); which stint
        th.misfit = False
        th.stint = 0
        th.state = IDLE
        th.since = th.born = self.runtime.now
        th.core = None
        #: where it ran before it was created here (a process that slept before the run started)
        th.last_core = None if last_cpu is None else self.cores[last_cpu]
        th.program = th.on_done = th.pending = None
        th.remaining = 0
        th.stack = ""
        th.multi = None
        th.debt = 0
        th.debt_stack = ""
        th.run = None
        th.step_user = th.kill_pending = False
        th.spinning = th.waiting_lock = None
        th.stack_ns = {}
        th.spin_since = 0
        th.preempt_count = th.sleep_gen = 0
        th.held = []
        th.rt_key = (-prio, 0)
        #: the core a queued FIFO thread waits on (its wakeup asked that core to reschedule); None: any core
        th.rt_core = None
        th.vruntime = th.deadline = th.vlag = 0
        th.run_ns = th.wait_ns = th.spin_ns = th.sleep_ns = th.idle_ns = 0
        # PELT utilization (the kernel seeds a new task's from its runqueue; here it starts empty)
        th.util = pelt.SchedAvg(self.runtime.now if self.runtime is not None else 0)
        th.ran_on = [0] * len(self.cores)  # ns on each core, up to its last switch out
        th.wakeups = th.preemptions = 0
        self.threads.append(th)
        return th

    # -- utilization (PELT) ------------------------------------------------------
    def thread_util(self, th: Thread) -> int:
        """``th``'s PELT utilization now (0..1024, invariant: relative to the biggest core at capacity 1.0)."""
        running = th.core.capacity if th.state == RUNNING else 0
        return th.util.util_at(self.runtime.now, running)

    def core_util(self, cid: int) -> int:
        """Core ``cid``'s runqueue utilization now (0..its capacity)."""
        return _core_util(self.cores[cid], self.runtime.now)

    def ran_on(self, th: Thread) -> list[int]:
        """ns ``th`` has been on each core so far (its current stint included)."""
        ran = list(th.ran_on)
        if th.state == RUNNING:
            ran[th.core.cid] += max(self.runtime.now - th.core.on_since, 0)
        return ran

    def cores_util(self) -> list[int]:
        """Every core's utilization now (a sampler's probe)."""
        return [self.core_util(core.cid) for core in self.cores]

    # -- the API actors use ----------------------------------------------------
    def submit(self, th: Thread, program: Iterable[Step], on_done: Callable[[WorkDone], None] | None = None) -> None:
        """Start ``program`` on idle thread ``th``; ``on_done(WorkDone)`` runs when it ends."""
        if th.program is not None:
            raise SchedulerError(f"{th.name} is already running a program")
        th.program = iter(program)
        th.on_done = on_done
        th.kill_pending = False
        th.idle_ns += self.runtime.now - th.since
        self._wake(th)

    def start(self, th: Thread, program: Iterable[Step]) -> None:
        """Start ``program`` on ``th`` and go on; its WorkDone is a message to ``th``'s owner when it ends
        (an actor that runs programs on several threads at once)."""
        owner = th.owner
        rt = self.runtime
        self.submit(th, program, lambda done: rt.post(owner, done))

    async def execute(self, th: Thread, program: Iterable[Step]) -> WorkDone:
        """Run ``program`` on ``th`` and wait for it; the caller must be ``th``'s owner."""
        owner = th.owner
        rt = self.runtime
        self.submit(th, program, lambda done: rt.wake(owner, done))
        return await owner.park()

    def interrupt(self, th: Thread) -> None:
        """A kill: cut user work short now; kernel work runs on to the next user step."""
        if th.program is None:
            return
        th.kill_pending = True
        state = th.state
        if not th.step_user:
            return
        if state == RUNNING:
            core = th.core
            if core.dispatching or th.remaining == 0:
                return
            self._account(core)
            th.remaining = 0
            core.gen += 1
            self._end_program(th, core, interrupted=True)
        elif state == RUNNABLE:
            self._dequeue(th)
            th.wait_ns += self.runtime.now - th.since
            th.remaining = 0
            self._count_active(-1)
            self._end_program(th, None, interrupted=True)
        elif state == BLOCKED and th.waiting_lock is None:
            th.sleep_gen += 1
            th.sleep_ns += self.runtime.now - th.since
            self._end_program(th, None, interrupted=True)

    def _set_nice(self, th: Thread, nice: int) -> None:
        th.nice = nice
        th.weight = sched_fair.nice_to_weight(nice)
        th.wmult = sched_fair.nice_to_wmult(nice)
        th.vslice = self.slice_ns * th.wmult

    def _set_cpus(self, th: Thread, cpus: Iterable[int]) -> None:
        """The thread's allowed cores, fastest first, and their bit mask."""
        allowed = sorted(set(cpus))
        if not allowed or any(not 0 <= c < len(self.cores) for c in allowed):
            raise ValueError(f"cpuset {allowed} of thread {th.name!r} is not within cores 0..{len(self.cores) - 1}")
        th.cores = tuple(sorted((self.cores[c] for c in allowed), key=lambda c: (-c.capacity, c.cid)))
        th.mask = sum(1 << c for c in allowed)

    def _dequeue(self, th: Thread) -> None:
        """Take a runnable thread off its run queue (a fair one keeps its lag for the next placement)."""
        if th.fair:
            th.core.queue.remove(th)
            self._save_lag(th.core, th)
            th.last_core = th.core
            th.core = None
        else:
            self._rtq.remove(th)
            th.rt_core = None

    def reconfigure(
        self,
        th: Thread,
        *,
        nice: int | None = None,
        cpus: Iterable[int] | None = None,
        thread_class: str | None = None,
        group: CpuGroup | None = None,
    ) -> None:
        """setpriority() / a cpuset (and cpu cgroup) move / a new accounting class for ``th``, effective now.

        A queued thread is re-placed at once; a running thread whose core is no
        longer allowed moves at its next preemption point (at once if it has
        one now). A new nice value restarts the thread's slice with the new
        weight (the kernel rescales lag in reweight_entity; a fresh slice is
        the simpler approximation).
        """
        core = th.core if th.state == RUNNING else None
        if core is not None:
            self._account(core)
        if thread_class is not None:
            th.thread_class = thread_class
        queued = th.state == RUNNABLE
        if queued:
            self._dequeue(th)
        if nice is not None and th.fair:
            self._set_nice(th, nice)
            th.deadline = th.vruntime + th.vslice
        if cpus is not None:
            self._set_cpus(th, cpus)
        if group is not None:
            th.uclamp_min = group.uclamp_min
            th.latency_sensitive = group.latency_sensitive
        if queued:
            if th.fair:
                self._wake_fair(th)
            else:
                self._wake_rt(th)
        elif core is not None and not th.mask >> core.cid & 1:
            if th.preempt_count or core.dispatching or self._runs_on(th):
                core.need_resched = True
            else:
                self._evict(core, th)
        elif core is not None and nice is not None and th.remaining and not th.preempt_count and not core.dispatching:
            self._arm(core)  # the slice end moved with the new weight

    def _evict(self, core: Core, th: Thread) -> None:
        """Move the (accounted) current thread off a core it may no longer run on."""
        self._detach(core, th, RUNNABLE)
        if th.fair:
            self._wake_fair(th)
        else:
            self._wake_rt(th)
        if core.curr is None:
            self._pick_next(core, not th.fair)

    @property
    def frame_ns(self) -> dict[tuple[Thread, Frame], int]:
        """CPU time (running or spinning) by thread and stack, outermost frame first."""
        return {(th, unfolded(stack)): ns for th in self.threads for stack, ns in th.stack_ns.items()}

    def busy_by_class(self) -> dict[str, int]:
        """CPU time so far by thread class, summed over cores (accounted up to now)."""
        total: dict[str, int] = {}
        for core in self.cores:
            self._account(core)
            for cls, ns in core.busy.items():
                total[cls] = total.get(cls, 0) + ns
        return total

    def capacity_busy(self) -> int:
        """Non-idle time so far summed over cores, each weighted by its capacity (ns x 0..1024), as accounted
        at the last accounting point (call after :meth:`busy_by_class` at the same instant)."""
        return sum(core.capacity * sum(core.busy.values()) for core in self.cores)

    @property
    def total_capacity(self) -> int:
        return sum(core.capacity for core in self.cores)

    def on_end(self) -> None:
        now = self.runtime.now
        tl = self.timeline
        for core in self.cores:
            self._account(core)
            if core.curr is not None and tl.on:
                tl.add_ran(core.on_since, now, core.cid, core.curr.tid)
        for th in self.threads:
            dt = now - th.since
            th.since = now
            if th.state == RUNNABLE:
                th.wait_ns += dt
            elif th.state == BLOCKED:
                th.sleep_ns += dt
            elif th.state == IDLE:
                th.idle_ns += dt
            lock = th.spinning or th.waiting_lock
            if lock is not None and tl.on:
                tl.add_wait(th.spin_since, now, th.tid, lock.name, lock.kind)

    # -- accounting --------------------------------------------------------------
    def _account(self, core: Core) -> None:
        now = self.runtime.now
        dt = now - core.seg_start
        if not dt:
            return
        th = core.curr
        if th is None:
            core.seg_start = now
            core.idle_ns += dt
            return
        busy = core.busy
        on_cpu = dt
        if now > core.irq_at:  # the core leaves idle or takes an interrupt: the thread makes no progress
            since = core.seg_start
            exit_until = core.exit_until
            if exit_until > since:  # still leaving the idle state: the core's idle time, the thread's wait
                waking = (exit_until if exit_until < now else now) - since
                core.idle_ns += waking
                th.wait_ns += waking
                on_cpu -= waking
                dt -= waking
                since += waking
            irq = core.irq
            if irq is None:
                core.irq_at = now if exit_until > now else NO_IRQ
            else:
                stolen = irq.take(since, now)
                core.irq_at = now if exit_until > now else irq.first_start()
                if stolen:
                    busy[IRQ_CLASS] = busy.get(IRQ_CLASS, 0) + stolen
                    dt -= stolen
        core.seg_start = now
        cls = th.thread_class
        busy[cls] = busy.get(cls, 0) + dt
        if th.spinning is None:
            th.run_ns += on_cpu
            rem = th.remaining - dt * core.capacity
            th.remaining = rem if rem > 0 else 0
        else:
            th.spin_ns += on_cpu
        stack_ns = th.stack_ns
        multi = th.multi
        if multi is None:
            stack = th.stack
            stack_ns[stack] = stack_ns.get(stack, 0) + dt
        else:
            _account_parts(stack_ns, multi, dt)
        if th.fair:
            th.vruntime += dt * th.wmult

    # -- running threads ---------------------------------------------------------
    def _switch_in(self, core: Core, th: Thread) -> None:
        """Make ``th`` (runnable, not queued) the current thread of idle ``core``; it runs once the core has left
        its idle state."""
        now = self.runtime.now
        core.curr = th
        core.need_resched = False  # __schedule() clears TIF_NEED_RESCHED: this pick answers it
        core.seg_start = now
        th.core = core
        th.state = RUNNING
        th.util.update(now, 0)
        core.util.update(now, 0)
        delay = now - th.since
        th.wait_ns += delay  # the wait for the core; leaving its idle state is accounted as the core's time
        if core.exit_until > now:  # still leaving idle for a thread that has left it since: this one waits on
            exit_ns = core.exit_until - now
        else:
            idle = now - core.idle_since
            exit_ns = exit_latency_ns(core.idle_states, idle) if idle >= core.idle_min else 0
        if exit_ns:
            core.on_since = core.exit_until = now + exit_ns
            core.irq_at = now  # the accounting's and the segment's slow path, until the core has left idle
            delay += exit_ns
        else:
            core.on_since = now
        if self.delayed.subscribers:
            self.delayed.emit(th, delay)
        if th.fair:
            core.protect = True
            if self.asym:
                self._watch_misfit(core, th)
        if self._trace:
            self.runtime.events.emit("sched", now, self.name, "switch", cpu=core.cid, thread=th.name, delay_ns=delay)
        if th.remaining:
            self._arm(core)
        elif exit_ns:  # its next steps, even those that take no time, wait until the core is out of idle
            gen = core.gen = core.gen + 1
            heappush(self._heap, (core.exit_until, next(self._seq), self._on_segment_end, (core, gen)))
        else:
            self._dispatch(core)

    def _stop_running(self, core: Core, th: Thread, now: int) -> int:
        """``th`` ran on ``core`` since it was switched in and the core left idle: its time there, and PELT (both
        signals accrue at the core's capacity while it runs). Returns when it began to run."""
        start = core.on_since
        if start == core.exit_until:  # the stint began by leaving an idle state: nothing ran until then
            if start > now:
                start = now
            th.util.update(start, 0)
            core.util.update(start, 0)
        th.ran_on[core.cid] += now - start
        th.util.update(now, core.capacity)
        core.util.update(now, core.capacity)
        th.misfit = False
        th.stint += 1
        return start

    def _switch_out(self, core: Core, th: Thread) -> None:
        """Put the (accounted) current thread back to runnable."""
        th.state = RUNNABLE
        now = th.since = self.runtime.now
        start = self._stop_running(core, th, now)
        th.preemptions += 1
        if self.timeline.on:
            self.timeline.add_ran(start, now, core.cid, th.tid)
        core.curr = None
        core.idle_since = now
        core.gen += 1
        if th.fair:
            core.queue.append(th)
        else:
            insort(self._rtq, th, key=_rt_key)

    def _arm(self, core: Core) -> None:
        """Schedule the end of the current thread's compute segment (or its slice)."""
        th = core.curr
        now = self.runtime.now
        end = now - (-th.remaining // core.capacity)
        if end > core.irq_at:  # the core is leaving idle, or a tick interrupt falls in the segment
            start = core.exit_until if core.exit_until > now else now
            end += start - now
            if core.irq is not None:
                end = core.irq.end_after(start, end - start)
        if th.fair and core.queue and not core.need_resched and (self.tick_ns or not th.preempt_count):
            # the tick comes whatever the thread holds; without one, atomic sections are checked at their ends
            core.sliced = True
            left = th.deadline - th.vruntime
            slice_end = tick_ceil(now - (-left // th.wmult) if left > 0 else now, self.tick_ns, self.tick_phase_ns)
            if slice_end < end:
                end = slice_end
        else:
            core.sliced = False
        gen = core.gen = core.gen + 1
        heappush(self._heap, (end, next(self._seq), self._on_segment_end, (core, gen)))

    def _segment_end(self, arg: tuple[Core, int]) -> None:
        core, gen = arg
        if gen != core.gen:
            return
        self._account(core)
        th = core.curr
        if not th.remaining:
            self._dispatch(core)
        elif th.preempt_count or self._runs_on(th):
            # the tick saw the slice end: the switch waits for preempt_enable() or a cond_resched()
            core.need_resched = True
            self._arm(core)
        else:
            self._resched(core)

    def _resched(self, core: Core) -> bool:
        """A scheduling point of the current thread: yield to a better one (True), or go on."""
        th = core.curr
        core.need_resched = False
        if not th.mask >> core.cid & 1:
            self._evict(core, th)
            return True
        better = self._rt_candidate(core, th)
        if better is None and th.fair and core.queue:
            if th.vruntime >= th.deadline:
                th.deadline = th.vruntime + th.vslice
                core.protect = False
            pick = self._pick_eevdf(core, th)
            if pick is not th:
                better = pick
                core.queue.remove(pick)
        if better is None:
            if th.remaining:
                self._arm(core)
            return False
        self._switch_out(core, th)
        self._switch_in(core, better)
        return True

    def _dispatch(self, core: Core) -> None:
        """Run the current thread's zero-time steps until one takes time or blocks."""
        th = core.curr
        program = th.program
        now = self.runtime.now
        locks = self.locks
        core.dispatching = True
        while True:
            step = th.pending
            if step is not None:
                th.pending = None
            else:
                run = th.run
                step = None if run is None else next(run, None)
                if step is None:
                    step = next(program, None)
                    if step.__class__ is tuple:  # a compiled run of steps: walk it here
                        run = iter(step)
                        step = next(run, None)
                        if step is None:
                            continue
                    else:
                        run = None
                    th.run = run
            cls = step.__class__
            if cls is Compute:
                if step.touch:
                    self._touch(core, th, step)
                ns = step.ns
                if not ns:
                    continue
                user = th.step_user = step.user
                if user and th.kill_pending:
                    core.dispatching = False
                    self._end_program(th, core, interrupted=True)
                    return
                if th.debt:
                    ns += th.debt
                    th.debt = 0
                th.remaining = ns << SCHED_CAPACITY_SHIFT
                th.stack = step.stack
                th.multi = step if step.parts else None
                core.dispatching = False
                if ((core.need_resched or self._slice_over(core, th)) and not th.preempt_count
                        and (user or not self._kernel_runs_on)):
                    self._resched(core)
                else:
                    self._arm(core)
                return
            if cls is Lock:
                lock = locks.get(step.name)
                if lock is None:
                    raise SchedulerError(f"{th.name}: lock {step.name!r} was never declared")
                if lock in th.held:
                    raise SchedulerError(f"{th.name}: recursive acquisition of {step.name!r} (AA deadlock)")
                write = step.mode == "write" and lock.kind != "line"
                if self._might_resched and not lock.spins and core.need_resched and not th.preempt_count:
                    # might_sleep() in mutex_lock()/down_read(): a voluntary preemption point
                    th.pending = step
                    core.dispatching = False
                    if self._resched(core):
                        return
                    th.pending = None
                    core.dispatching = True
                if lock.grantable(write):
                    self._grant(lock, th, write)
                    extra = self._transfer(lock, core, step.count)
                    if extra:
                        # paid with the next compute step (or before anything else)
                        th.debt += extra
                        th.debt_stack = step.stack
                    continue
                if th.debt:
                    self._pay_debt(core, th, step)
                    return
                core.dispatching = False
                if lock.spins and core.need_resched and not th.preempt_count and not self._kernel_runs_on:
                    # a preemption is due before this thread disables it to spin
                    th.pending = step
                    if self._resched(core):
                        return
                    th.pending = None
                lock.contended += 1
                if self._trace_locks:
                    holder = lock.owner.name if lock.owner is not None else f"{lock.readers} reader(s)"
                    self.runtime.events.emit("lock", now, self.name, "lock_contended", lock=lock.name,
                                             kind=lock.kind, thread=th.name, holder=holder)
                if lock.spins:
                    th.spinning = lock
                    th.spin_since = now
                    if lock.transfer_ns:
                        lock.until[core.cid] = ONGOING  # a spinner reads the lock word: it contends
                    th.stack = f"{step.stack};{SPIN_FRAME}" if step.stack else SPIN_FRAME
                    th.multi = None
                    th.preempt_count += 1
                    lock.waiters.append((th, write, step))
                    core.gen += 1
                    return
                if th.preempt_count:
                    raise SchedulerError(f"{th.name}: sleeping on {lock.kind} {step.name!r} while atomic")
                th.waiting_lock = lock
                th.spin_since = now
                lock.waiters.append((th, write, step))
                self._block(core, th)
                return
            if th.debt:  # transfer time is burnt before anything but CPU work and locks
                self._pay_debt(core, th, step)
                return
            if cls is Unlock:
                self._unlock(th, step.name)
                if (not th.preempt_count and not self._kernel_runs_on
                        and (core.need_resched or self._slice_over(core, th))):
                    # preempt_enable() under CONFIG_PREEMPT: a deferred preemption happens now
                    core.dispatching = False
                    if self._resched(core):
                        return
                    core.dispatching = True
                continue
            if cls is Sleep or cls is SleepUntil:
                wake_at = now + step.ns if cls is Sleep else step.t_ns
                th.step_user = step.user
                if step.user and th.kill_pending:
                    core.dispatching = False
                    self._end_program(th, core, interrupted=True)
                    return
                if wake_at <= now:
                    continue
                if th.preempt_count:
                    raise SchedulerError(f"{th.name}: sleeping while atomic (holding a spinlock)")
                core.dispatching = False
                th.sleep_gen += 1
                self.runtime.at(wake_at, self._timer_wake, (th, th.sleep_gen))
                self._block(core, th)
                return
            if cls is CondResched:
                if (core.need_resched or self._slice_over(core, th)) and not th.preempt_count:
                    core.dispatching = False
                    if self._resched(core):
                        return
                    core.dispatching = True
                continue
            if cls is Marker:
                hook = th.on_marker
                if hook is not None:
                    hook(th, step.label, step.data)
                continue
            if step is None:
                core.dispatching = False
                self._end_program(th, core, interrupted=False)
                return
            raise SchedulerError(f"{th.name}: not a work step: {step!r}")

    def _runs_on(self, th: Thread) -> bool:
        """Is ``th`` in kernel code that a reschedule must wait in until a cond_resched() (preempt none/voluntary)?"""
        return self._kernel_runs_on and not th.step_user

    def _slice_over(self, core: Core, th: Thread) -> bool:
        """Without a tick, a fair slice that ran out is noticed at the next step; with one, only at the tick."""
        return not self.tick_ns and th.fair and bool(core.queue) and th.vruntime >= th.deadline

    def _touch(self, core: Core, th: Thread, step: Compute) -> None:
        """The shared cache lines a compute step touches, throughout the step: each costs its transfers."""
        for name, count in step.touch:
            lock = self.locks.get(name)
            if lock is None or lock.kind != "line":
                raise SchedulerError(f"{th.name}: {name!r} is not a declared cache line")
            lock.acquired += 1
            extra = self._transfer(lock, core, count)
            if extra:
                th.debt += extra
                th.debt_stack = step.stack
            if lock.transfer_ns:
                lock.until[core.cid] = self.runtime.now - (-((step.ns + th.debt) << SCHED_CAPACITY_SHIFT)
                                                           // core.capacity)

    def _pay_debt(self, core: Core, th: Thread, step: Step | None) -> None:
        """Burn pending cache-line transfer time now, then resume at ``step``."""
        th.pending = step
        th.remaining = th.debt << SCHED_CAPACITY_SHIFT
        th.stack = th.debt_stack
        th.multi = None
        th.debt = 0
        core.dispatching = False
        self._arm(core)

    def _grant(self, lock: KLock, th: Thread, write: bool) -> None:
        if write:
            lock.owner = th
        else:
            lock.readers += 1
        if lock.owner is th or lock.readers == 1:
            lock.hold_since = self.runtime.now
        lock.acquired += 1
        th.held.append(lock)
        if lock.spins:
            th.preempt_count += 1

    def _transfer(self, lock: KLock, core: Core, count: int) -> int:
        """Extra ns for ``count`` accesses to the lock's cache lines by ``core`` now (the coherence law)."""
        if not lock.transfer_ns:
            return 0
        cpu = core.cid
        now = self.runtime.now
        k = contenders(cpu, lock.since, lock.until, lock.last_cpu)
        lock.last_cpu = cpu
        lock.since[cpu] = now
        lock.until[cpu] = ONGOING
        if k:
            lock.transfers += count * k
            return lock.transfer_ns * count * k
        return 0

    def _unlock(self, th: Thread, name: str) -> None:
        lock = self.locks.get(name)
        if lock is None or lock not in th.held:
            raise SchedulerError(f"{th.name}: unlock of {name!r} which it does not hold")
        now = self.runtime.now
        th.held.remove(lock)
        if lock.spins:
            th.preempt_count -= 1
        if lock.transfer_ns:
            lock.until[th.core.cid] = now
        if lock.owner is th:
            lock.owner = None
        else:
            lock.readers -= 1
        if lock.owner is None and lock.readers == 0:
            lock.held_ns += now - lock.hold_since
        waiters = lock.waiters
        while waiters and lock.owner is None and (not waiters[0][1] or lock.readers == 0):
            waiter, write, step = waiters.popleft()
            lock.wait_ns += now - waiter.spin_since
            if self.timeline.on:
                self.timeline.add_wait(waiter.spin_since, now, waiter.tid, name, lock.kind)
            if self._trace_locks:
                self.runtime.events.emit("lock", now, self.name, "lock_handoff", lock=name, kind=lock.kind,
                                         thread=waiter.name, waited_ns=now - waiter.spin_since)
            self._grant(lock, waiter, write)
            if lock.spins:
                core = waiter.core
                self._account(core)
                waiter.spinning = None
                waiter.preempt_count -= 1  # the spin's count becomes the holder's, taken by _grant
                extra = self._transfer(lock, core, step.count)
                if extra:
                    waiter.remaining = extra << SCHED_CAPACITY_SHIFT
                    waiter.stack = step.stack
                    waiter.multi = None
                    self._arm(core)
                else:
                    core.gen += 1
                    self.runtime.at(now, self._segment_end, (core, core.gen))
            else:
                waiter.waiting_lock = None
                waiter.sleep_ns += now - waiter.since
                self._wake(waiter)
            if write:
                break

    def _leave_cpu(self, core: Core, th: Thread, state: int) -> None:
        """The current thread stops running (to sleep, or because its program ended)."""
        self._count_active(-1)
        self._detach(core, th, state)

    def _detach(self, core: Core, th: Thread, state: int) -> None:
        """``th`` is no longer ``core``'s current thread; a fair one keeps its lag."""
        th.state = state
        now = th.since = self.runtime.now
        start = self._stop_running(core, th, now)
        if self.timeline.on:
            self.timeline.add_ran(start, now, core.cid, th.tid)
        core.curr = None
        core.idle_since = now
        core.gen += 1
        th.core = None
        th.last_core = core
        if th.fair:
            self._save_lag(core, th)

    def _block(self, core: Core, th: Thread) -> None:
        self._leave_cpu(core, th, BLOCKED)
        self._pick_next(core, not th.fair)

    def _end_program(self, th: Thread, core: Core | None, interrupted: bool) -> None:
        if th.held:
            raise SchedulerError(f"{th.name}: program ended holding {', '.join(lk.name for lk in th.held)}")
        th.program = None
        th.run = None
        th.remaining = 0
        th.step_user = False
        if core is not None:
            self._leave_cpu(core, th, IDLE)
        else:
            th.state = IDLE
            th.since = self.runtime.now
        on_done = th.on_done
        th.on_done = None
        if core is not None:
            self._pick_next(core, not th.fair)
        if on_done is not None:
            on_done(WorkDone(self.runtime.now, interrupted))

    def _timer_wake(self, arg: tuple[Thread, int]) -> None:
        th, gen = arg
        if gen != th.sleep_gen:
            return
        th.sleep_ns += self.runtime.now - th.since
        self._wake(th)

    # -- choosing what runs where ------------------------------------------------
    def _pick_next(self, core: Core, after_rt: bool = False) -> None:
        """``core`` has no current thread: run the best runnable thread, if any. A queued FIFO thread waiting on
        another core is taken only as pull_rt_task() would: a FIFO thread just left this core, and the other
        core is RT-overloaded (it runs a FIFO thread too)."""
        rtq = self._rtq
        if rtq:
            bit = 1 << core.cid
            for i, th in enumerate(rtq):
                home = th.rt_core
                if th.mask & bit and (home is None or home is core or (
                        after_rt and home.curr is not None and not home.curr.fair)):
                    del rtq[i]
                    th.rt_core = None
                    self._switch_in(core, th)
                    return
        if core.queue:
            pick = self._pick_eevdf(core, None)
            core.queue.remove(pick)
            self._switch_in(core, pick)
            return
        pulled = self._pull(core)
        if pulled is not None:
            self._switch_in(core, pulled)

    def _rt_candidate(self, core: Core, curr: Thread) -> Thread | None:
        """The first queued FIFO thread allowed here that outranks ``curr``, dequeued."""
        rtq = self._rtq
        if not rtq:
            return None
        bit = 1 << core.cid
        for i, th in enumerate(rtq):
            if th.mask & bit and (th.rt_core is None or th.rt_core is core):
                if curr.fair or th.prio > curr.prio:
                    del rtq[i]
                    th.rt_core = None
                    return th
                return None
        return None

    def _count_active(self, delta: int) -> None:
        if self.active_changing.subscribers:
            self.active_changing.emit()
        self.nr_active += delta

    def _wake(self, th: Thread) -> None:
        now = self.runtime.now
        self._count_active(1)
        th.state = RUNNABLE
        th.since = now
        th.wakeups += 1
        if th.fair:
            self._wake_fair(th)
        else:
            self._wake_rt(th)

    def _wake_rt(self, th: Thread) -> None:
        """select_task_rq_rt(): the previous core unless an RT thread runs there, else find_lowest_rq(): an idle
        core, else one running a fair thread, else the lowest-priority RT one; preempt what runs there. (Where
        the kernel would preempt a lower RT thread on the previous core and push it to a fair core, this
        preempts the fair core directly: the same threads run.)"""
        self._rt_seq += 1
        th.rt_key = (-th.prio, self._rt_seq)
        victim = None
        rank = None
        prev = th.last_core
        if prev is not None and th.mask >> prev.cid & 1 and (prev.curr is None or prev.curr.fair):
            if prev.curr is None:
                self._account(prev)
                self._switch_in(prev, th)
                return
            victim = prev
        else:
            for core in th.cores:
                curr = core.curr
                if curr is None:
                    self._account(core)
                    self._switch_in(core, th)
                    return
                if curr.fair:
                    if rank is None or rank[0] == 0:
                        victim, rank = core, (1,)
                elif curr.prio < th.prio and (rank is None or (rank[0] == 0 and curr.rt_key > rank[1])):
                    victim, rank = core, (0, curr.rt_key)
        if victim is None:
            insort(self._rtq, th, key=_rt_key)
            return
        curr = victim.curr
        if curr.preempt_count or victim.dispatching or self._runs_on(curr):
            victim.need_resched = True
            th.rt_core = victim
            insort(self._rtq, th, key=_rt_key)
            return
        self._account(victim)
        self._switch_out(victim, curr)
        self._switch_in(victim, th)
        if curr.fair:
            self._migrate_to_idle(curr)

    def _wake_fair(self, th: Thread) -> None:
        prev = th.last_core
        if self.asym:
            target = self._select_asym(th, prev)
        else:
            target = None
            if prev is not None and prev.curr is None and th.mask >> prev.cid & 1:
                target = prev
            else:
                for core in th.cores:
                    if core.curr is None:
                        target = core
                        break
        if target is not None and target.curr is None:
            self._place(target, th)
            self._switch_in(target, th)
            return
        if target is None:
            target = self._busy_target(th, prev)
        self._place(target, th)
        target.queue.append(th)
        th.core = target
        self._arm_balance()
        curr = target.curr
        if not curr.fair:
            return
        if self.tunables.wakeup_preemption:
            if self._pick_eevdf(target, curr) is th:
                if curr.preempt_count or target.dispatching or curr.spinning is not None or self._runs_on(curr):
                    target.need_resched = True
                    return
                target.queue.remove(th)
                self._switch_out(target, curr)
                self._switch_in(target, th)
                return
        if not target.sliced and not curr.preempt_count and curr.remaining and not target.dispatching:
            self._arm(target)  # _place accounted the core up to now

    def _busy_target(self, th: Thread, prev: Core | None) -> Core:
        """Where a woken fair thread queues when no allowed core is idle: select_idle_sibling() returns its
        target, the previous core (the wakee keeps its cache); a thread with none the least loaded core."""
        if prev is not None and th.mask >> prev.cid & 1:
            return prev
        return min(th.cores, key=lambda c: self._load_key(c, prev))

    @classmethod
    def _load_key(cls, core: Core, prev: Core | None) -> tuple[int, int, bool, int]:
        return (0 if core.curr.fair else 1, cls._load_per_capacity(core), core is not prev, core.cid)

    # -- placement by capacity (big.LITTLE) -------------------------------------------
    def _fitting_utils(self) -> list[int] | None:
        """Every core's utilization now, or None if one does not fit its capacity: rd->overutilized, read when it
        is needed (the kernel keeps a flag updated at enqueues and ticks); it stops at the first that does not."""
        now = self.runtime.now
        utils = []
        for core in self.cores:
            util = _core_util(core, now)
            if not util_fits_cpu(util, 0, core.capacity):
                return None
            utils.append(util)
        return utils

    def _select_asym(self, th: Thread, prev: Core | None) -> Core | None:
        """select_task_rq_fair() on asymmetric capacities: find_energy_efficient_cpu() while EAS is on and no
        core is overutilized, else select_idle_sibling()'s fit-aware choice: the previous core if idle and the
        task fits it, then select_idle_capacity(). None: no idle allowed core (queue on the busy target)."""
        util = self.thread_util(th)
        if self.eas and (util or th.uclamp_min):
            utils = self._fitting_utils()
            if utils is not None:
                target = self._energy_efficient(th, prev, util, utils)
                if target is not None:
                    return target
        if prev is not None and prev.curr is None and th.mask >> prev.cid & 1 and util_fits_cpu(
                util, th.uclamp_min, prev.capacity) > 0:
            return prev
        return self._select_idle_capacity(th, prev, util)

    def _select_idle_capacity(self, th: Thread, prev: Core | None, util: int) -> Core | None:
        """select_idle_capacity(): from the previous core on, the first idle allowed core the task fits; else
        the idle one that fits best (only the clamp unmet beats nothing), biggest first."""
        n = len(self.cores)
        start = prev.cid if prev is not None else 0
        best = None
        best_key = (1, 0)
        for k in range(n):
            core = self.cores[(start + k) % n]
            if core.curr is not None or not th.mask >> core.cid & 1:
                continue
            fits = util_fits_cpu(util, th.uclamp_min, core.capacity)
            if fits > 0:
                return core
            key = (fits, -core.capacity)
            if best is None or key < best_key:
                best, best_key = core, key
        return best

    def _energy_efficient(self, th: Thread, prev: Core | None, util: int, utils: list[int]) -> Core | None:
        """find_energy_efficient_cpu() without an energy model, as Android's kernels run it.

        Candidates are the allowed cores the task fits with its utilization added to theirs. A
        latency-sensitive task (Android's cpu.uclamp.latency_sensitive) takes an idle candidate, the biggest
        if it is boosted (uclamp.min > 0), else the smallest, failing that the candidate with most spare
        capacity. Any other task goes to the smallest-capacity cluster with a candidate (the cheaper cores,
        standing in for the energy comparison): its previous core if that is one, else the candidate there
        with most spare capacity. None: no core fits. ``utils``: every core's utilization now."""
        umin = th.uclamp_min
        best_idle = best_spare = None
        idle_key = spare_key = None
        boosted = umin > 0
        for core in th.cores:
            cu = utils[core.cid]
            with_p = max(cu, util) if core is prev else cu + util
            if util_fits_cpu(with_p, umin, core.capacity) <= 0:
                continue
            spare = core.capacity - with_p
            if th.latency_sensitive:
                if core.curr is None:
                    key = (-core.capacity if boosted else core.capacity, core.cid)
                    if idle_key is None or key < idle_key:
                        best_idle, idle_key = core, key
                key = (-spare, core.cid)
            else:
                key = (core.capacity, core is not prev, -spare, core.cid)
            if spare_key is None or key < spare_key:
                best_spare, spare_key = core, key
        return best_idle if best_idle is not None else best_spare

    # -- misfit tasks --------------------------------------------------------------
    def _watch_misfit(self, core: Core, th: Thread) -> None:
        """update_misfit_status() at the ticks of ``th``'s stint on ``core``: if a bigger core is allowed to it,
        the first tick at which it no longer fits marks it misfit (one event, at that tick)."""
        cap = core.capacity
        if th.cores[0].capacity <= cap:  # its fastest allowed core is no bigger
            return
        t = now = self.runtime.now
        sa = th.util
        if util_fits_cpu(sa.util_avg, th.uclamp_min, cap) > 0:
            threshold = misfit_util(cap)
            periods = periods_to_reach(sa.util_avg, threshold, cap)
            if periods < 0:
                return
            t = now + max(periods - 1, 0) * pelt.PELT_PERIOD_NS
            while sa.util_at(t, cap) < threshold:
                t += pelt.PELT_PERIOD_NS
        self.runtime.at(tick_ceil(t, self.tick_ns, self.tick_phase_ns), self._mark_misfit, (th, th.stint))

    def _mark_misfit(self, arg: tuple[Thread, int]) -> None:
        """The tick saw ``th`` misfit: nohz_balancer_kick() wakes the idle balancer, which balances for the idle
        cores in CPU order (_nohz_idle_balance()); the first bigger one it may run on takes it."""
        th, stint = arg
        if stint != th.stint or th.state != RUNNING:
            return
        th.misfit = True
        src = th.core
        dst = None
        for core in self.cores:
            if core.curr is None and core.capacity > src.capacity and th.mask >> core.cid & 1:
                dst = core
                break
        if dst is not None and not self._balanced_by_energy():
            self._active_balance(src, th, dst)

    def _active_balance(self, src: Core, th: Thread, dst: Core) -> bool:
        """active_load_balance_cpu_stop(): the stopper on ``src`` preempts running ``th`` and moves it to idle
        ``dst`` (not while it cannot be preempted: then a later balance will)."""
        if th.preempt_count or src.dispatching or th.spinning is not None or self._runs_on(th):
            return False
        self._account(src)
        self._switch_out(src, th)
        src.queue.remove(th)
        self._save_lag(src, th)
        self._place(dst, th)
        self._switch_in(dst, th)
        self._pick_next(src)
        return True

    def _pull_misfit(self, dst: Core) -> bool:
        """A balance on idle ``dst``: move the most utilized misfit running on a smaller core it may run on."""
        bit = 1 << dst.cid
        best = None
        for core in self.cores:
            th = core.curr
            if th is not None and th.misfit and th.mask & bit and core.capacity < dst.capacity and (
                    best is None or th.util.util_avg > best.util.util_avg):
                best = th
        return best is not None and self._active_balance(best.core, best, dst)

    # -- periodic load balancing ------------------------------------------------------
    def _balanced_by_energy(self) -> bool:
        """find_busiest_group() with EAS on: nothing to balance while no core is overutilized."""
        return self.eas and self._fitting_utils() is not None

    def _arm_balance(self) -> None:
        """Busy cores have queued threads: make sure the next periodic balance is due (one event at a time)."""
        if not self._slots or self._balance_armed:
            return
        now = max(self.runtime.now, self._balance_next)
        nxt = min(tick_ceil(now, interval, phase) for interval, phase, _, _ in self._slots)
        self._balance_armed = True
        self.runtime.at(nxt, self._periodic_balance, nxt)

    def _periodic_balance(self, t_ns: int) -> None:
        """run_rebalance_domains() of the cores whose turn it is, each domain lowest first; go on while any
        core has threads waiting."""
        self._balance_armed = False
        self._balance_next = t_ns + 1
        for interval, phase, cid, level in self._slots:
            if (t_ns - phase) % interval == 0:
                self._balance(self.cores[cid], self.domains[cid][level])
        if any(core.queue for core in self.cores):
            self._arm_balance()

    def _balance(self, dst: Core, sd: topology.SchedDomain) -> None:
        """load_balance() into ``dst`` at domain ``sd``: from the busiest other group (by load per capacity)
        its busiest core, move queued fair threads while the move narrows the gap in weight, longest-waiting
        first; an idle ``dst`` at a level that spans bigger-than-smaller cores takes a misfit."""
        if self._balanced_by_energy():
            return
        bit = 1 << dst.cid
        own = self._cluster_of[dst.cid]
        if sd.name == "DIE":
            groups = [tuple(self.cores[c] for c in g) for g in sd.groups if dst.cid not in g]
            movable = [g for g in groups if any(t.mask & bit for c in g for t in c.queue)]
            if not movable and dst.curr is None:
                self._pull_misfit(dst)
                return
            if not movable:
                return
            load, _, busiest = max((self._group_load(g), -g[0].cid, g) for g in movable)
            if load <= self._group_load(own):
                return
            candidates = busiest
        else:
            candidates = tuple(self.cores[c] for c in sd.span)
        while True:
            src = max((c for c in candidates if c is not dst and any(t.mask & bit for t in c.queue)),
                      key=lambda c: (self._load_per_capacity(c), -c.cid), default=None)
            if src is None:
                return
            th = min((t for t in src.queue if t.mask & bit), key=lambda t: (t.since, t.tid))
            if self._load_per_capacity(dst, th.weight) >= self._load_per_capacity(src):
                return
            src.queue.remove(th)
            self._save_lag(src, th)
            if dst.curr is None:
                self._place(dst, th)
                self._switch_in(dst, th)
                return
            self._place(dst, th)
            dst.queue.append(th)
            th.core = dst
            curr = dst.curr
            if curr.fair and not dst.sliced and curr.remaining and not dst.dispatching:
                self._arm(dst)

    @staticmethod
    def _fair_weight(core: Core) -> int:
        """The fair weight on ``core``: its queued threads and a fair current one."""
        curr = core.curr
        load = sum(t.weight for t in core.queue)
        if curr is not None and curr.fair:
            load += curr.weight
        return load

    @classmethod
    def _group_load(cls, group: tuple[Core, ...]) -> int:
        """A sched_group's avg_load: its cores' fair weight per unit of their capacity."""
        return (sum(cls._fair_weight(c) for c in group) * SCHED_CAPACITY_SCALE
                // sum(c.capacity for c in group))

    @classmethod
    def _load_per_capacity(cls, core: Core, extra: int = 0) -> int:
        """The fair weight on ``core`` (and ``extra``) per unit of capacity."""
        return (cls._fair_weight(core) + extra) * SCHED_CAPACITY_SCALE // core.capacity

    def _migrate_to_idle(self, th: Thread) -> None:
        """A fair thread just preempted by an RT one moves to an idle allowed core, if any."""
        if th.state != RUNNABLE:
            return
        for core in th.cores:
            if core.curr is None:
                src = th.core
                src.queue.remove(th)
                self._save_lag(src, th)
                self._place(core, th)
                self._switch_in(core, th)
                return

    def _pull(self, core: Core) -> Thread | None:
        """Newly-idle balance: take the longest-waiting queued fair thread allowed on ``core``, from its own
        cluster first (the MC domain before DIE); with none, a misfit from a smaller core."""
        if self._balanced_by_energy():
            return None
        bit = 1 << core.cid
        best = None
        for scope in (self._cluster_of[core.cid], self.cores) if self.asym else (self.cores,):
            for other in scope:
                if other is core:
                    continue
                for th in other.queue:
                    if th.mask & bit and (best is None or (th.since, th.tid) < (best.since, best.tid)):
                        best = th
            if best is not None:
                break
        if best is None:
            if self.asym:
                self._pull_misfit(core)
            return None
        src = best.core
        src.queue.remove(best)
        self._save_lag(src, best)
        self._place(core, best)
        return best

    # -- EEVDF ---------------------------------------------------------------------
    @staticmethod
    def _entities(core: Core, curr: Thread | None) -> list[tuple[int, int]]:
        ents = [(t.vruntime, t.weight) for t in core.queue]
        if curr is not None and curr.fair:
            ents.append((curr.vruntime, curr.weight))
        return ents

    def _pick_eevdf(self, core: Core, curr: Thread | None) -> Thread:
        """pick_eevdf(): the eligible entity with the earliest virtual deadline."""
        total, load = sched_fair.load_sums(self._entities(core, curr))
        if curr is not None and not curr.fair:
            curr = None
        if (
            curr is not None
            and self.tunables.run_to_parity
            and core.protect
            and curr.vruntime < curr.deadline
            and sched_fair.entity_eligible(curr.vruntime, total, load)
        ):
            return curr
        best = None
        candidates = core.queue if curr is None else [*core.queue, curr]
        for t in candidates:
            if t.vruntime * load <= total and (
                best is None or (t.deadline, t.tid) < (best.deadline, best.tid)
            ):
                best = t
        return best

    def _save_lag(self, core: Core, th: Thread) -> None:
        """dequeue: remember lag = V - v (clamped) so a later placement keeps it."""
        self._account(core)
        ents = self._entities(core, core.curr)
        ents.append((th.vruntime, th.weight))
        avg = sched_fair.avg_vruntime(ents)
        core.vclock = avg
        limit = 2 * th.vslice
        th.vlag = max(-limit, min(limit, avg - th.vruntime))

    def _place(self, core: Core, th: Thread) -> None:
        """place_entity() with PLACE_LAG: v = V - lag, deadline one slice ahead."""
        self._account(core)
        ents = self._entities(core, core.curr)
        avg = sched_fair.avg_vruntime(ents) if ents else core.vclock
        th.vruntime = avg - th.vlag
        th.deadline = th.vruntime + th.vslice
