"""Android's low memory killer daemon: the main thread and its reaper threads (docs/domain.md §1).

The main thread (SCHED_FIFO 1 on the little cores) sleeps until a PSI
trigger fires, then polls memory state every poll period; each cycle reads
/proc (CPU work on its own thread), runs the kill decision and kills at most
one process. After a kill it waits for the victim's pidfd to become readable
(the thread group is gone) or for ``kill_timeout_ms``, then cycles again at
once. Polling ends a PSI window after the last event once nothing was killed
and no thread is in direct reclaim.

Killing goes through a reaper thread when one is free: it kills (the kill
policy's steps: a SIGKILL, or a cgroup.kill write), moves the victim to the
foreground cpuset at the configured nice (set_process_group_and_prio, a
cgroup migration under cgroup_mutex), then calls process_mrelease() in its
own context if the reap policy says so; the call fails with ESRCH once the
victim has passed exit_mm. When every reaper is busy the main thread kills
by itself and nothing reaps (lmkd commit 1c96a31).

Not modelled: thrashing (file refaults; the ladder's thrashing rules never
fire), the watchdog, and reading per-process state (folded into the cost of
a kill).
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Iterator, Protocol

from attrs import field, frozen

from actors.cpu.scheduler import NO_GROUP, CpuGroup, Thread
from actors.cpu.work import Compute, Lock, Step, Unlock
from actors.kernel.kernel import CGROUP_MUTEX, Kernel
from actors.kernel.memory import mb_to_pages
from actors.kernel.process import Process, process_mrelease
from actors.messages import ProcessExited, PsiEvent, ReapDone, ReapRequest
from actors.runtime.actor import Actor
from actors.runtime.quantities import InNs
from actors.runtime.validators import InvalidValue, between, in_range, non_negative, positive

class KillMethod(Protocol):
    """How a thread kills a victim (the kill policy): work steps that deliver the SIGKILL."""

    def steps(self, victim: Process) -> Iterable[Step]: ...


class ReapPolicy(Protocol):
    """What one of lmkd's reaper threads does with a victim lmkd handed it (the reap policy), with the
    reaper's own steps (:meth:`LmkdReaper.kill`, :meth:`LmkdReaper.reprioritise`,
    :meth:`LmkdReaper.mrelease`, or any work program through :meth:`LmkdReaper.run`)."""

    async def handle(self, reaper: "LmkdReaper", victim: Process) -> None: ...


@frozen
class MinfreeLevel:
    """One legacy minfree level: kill adj >= ``adj`` when free and file cache are below ``mb``."""

    mb: float = field(validator=non_negative)
    adj: int = field(validator=in_range(-1000, 1000))


def _levels_ascending(_inst: Any, _attribute: Any, value: list[MinfreeLevel]) -> None:
    if [lv.mb for lv in value] != sorted(lv.mb for lv in value):
        raise InvalidValue("minfree_levels", "levels in ascending order of mb", [lv.mb for lv in value])


@frozen
class LmkdProps:
    """lmkd's tunables, named after their ro.lmk.* properties and source constants."""

    use_minfree_levels: bool
    psi_partial_stall_ms: float = field(validator=positive)
    psi_complete_stall_ms: float = field(validator=positive)
    #: PSI_WINDOW_SIZE_MS; the kernel accepts a trigger window of 500 ms to 10 s (kernel/sched/psi.c,
    #: WINDOW_MIN_US and WINDOW_MAX_US)
    psi_window_ms: float = field(validator=between(500, 10_000))
    #: PSI_POLL_PERIOD_SHORT_MS and PSI_POLL_PERIOD_LONG_MS (at least 1 ms: lmkd's poll timeout is in ms)
    poll_period_short_ms: float = field(validator=between(1, 10_000))
    poll_period_long_ms: float = field(validator=between(1, 10_000))
    kill_timeout_ms: float = field(validator=non_negative)
    swap_free_low_percentage: float = field(validator=in_range(0, 100))
    pressure_after_kill_min_score: int = field(validator=in_range(-1000, 1001))
    #: ProcessList.PERCEPTIBLE_APP_ADJ: rule "swap low and free < low" spares apps at or under it
    #: unless free < min, and the victim in such a slot is the heaviest
    perceptible_app_adj: int = field(validator=in_range(-1000, 1000))
    #: ProcessList.PREVIOUS_APP_ADJ: rule "free < low" alone kills only above it (cached, service B)
    previous_app_adj: int = field(validator=in_range(-1000, 1000))
    kill_heaviest_task: bool
    minfree_levels: list[MinfreeLevel] = field(validator=_levels_ascending)

    def __attrs_post_init__(self) -> None:
        for key in ("psi_partial_stall_ms", "psi_complete_stall_ms"):
            if getattr(self, key) > self.psi_window_ms:
                raise InvalidValue(key, f"a stall threshold <= psi_window_ms ({self.psi_window_ms})", getattr(self, key))

    psi_window_ns = InNs("psi_window_ms")
    psi_partial_stall_ns = InNs("psi_partial_stall_ms")
    psi_complete_stall_ns = InNs("psi_complete_stall_ms")
    poll_period_short_ns = InNs("poll_period_short_ms")
    poll_period_long_ns = InNs("poll_period_long_ms")
    kill_timeout_ns = InNs("kill_timeout_ms")


@frozen
class LmkdCosts:
    """CPU work of lmkd's own threads, µs at capacity 1.0."""

    cycle_us: float = field(validator=non_negative)       # read meminfo, vmstat, zoneinfo; decide
    kill_us: float = field(validator=non_negative)        # scan the adj slots, read statm and the victim's state
    signal_us: float = field(validator=non_negative)      # pidfd_send_signal(SIGKILL), by whichever thread sends it
    set_prio_us: float = field(validator=non_negative)    # reaper: cgroup move (under cgroup_mutex) + setpriority

    cycle_ns = InNs("cycle_us")
    kill_ns = InNs("kill_us")
    signal_ns = InNs("signal_us")
    set_prio_ns = InNs("set_prio_us")


@frozen
class MemoryState:
    """What one lmkd cycle reads, in pages."""

    free: int
    file_cache: int
    wmark_min: int
    wmark_low: int
    swap_free: int
    swap_total: int


def swap_is_low(swap_free: int, swap_total: int, swap_free_low_percentage: float) -> bool:
    """Free swap under ``swap_free_low_percentage`` of the total (no swap: never low)."""
    return swap_total > 0 and swap_free * 100 < swap_total * swap_free_low_percentage


def psi_kill_decision(state: MemoryState, props: LmkdProps, *, critical: bool, after_kill: bool
                      ) -> tuple[str, int] | None:
    """mp_event_psi()'s ladder without the thrashing rules: (kill reason, min score adj) or None."""
    free = state.free
    swap_low = swap_is_low(state.swap_free, state.swap_total, props.swap_free_low_percentage)
    if after_kill and free < state.wmark_min:
        return "pressure_after_kill", props.pressure_after_kill_min_score
    if critical:
        return "not_responding", 0
    if swap_low and free < state.wmark_low:
        return "low_swap_and_low_mem", 0 if free < state.wmark_min else props.perceptible_app_adj + 1
    if free < state.wmark_low:
        return "low_mem", props.previous_app_adj + 1
    return None


def minfree_kill_decision(state: MemoryState, levels: list[MinfreeLevel]) -> tuple[str, int] | None:
    """Legacy mode: the first (lowest) level whose minfree both free memory and file cache are under."""
    for level in levels:
        minfree = mb_to_pages(level.mb)
        if state.free < minfree and state.file_cache < minfree:
            return "minfree", level.adj
    return None


def choose_victim(apps: list[Process], min_adj: int, props: LmkdProps) -> Process | None:
    """find_and_kill_process(): the highest adj slot >= ``min_adj`` holding a live app wins.

    Within a slot, the app that entered it first (lowest pid here), unless
    ``kill_heaviest_task`` or the slot is perceptible (adj <= PERCEPTIBLE_APP_ADJ):
    then the largest RSS (resident anon + file; swap does not count).
    """
    kill_heaviest_task, perceptible = props.kill_heaviest_task, props.perceptible_app_adj
    best: Process | None = None
    for app in apps:
        if app.killed_at is not None or app.adj < min_adj:
            continue
        if best is None or app.adj > best.adj:
            best = app
            continue
        if app.adj == best.adj:
            if kill_heaviest_task or app.adj <= perceptible:
                if (app.mm.anon + app.mm.file, -app.pid) > (best.mm.anon + best.mm.file, -best.pid):
                    best = app
            elif app.pid < best.pid:
                best = app
    return best


class LmkdReaper(Actor):
    """One lmkd reaper thread: what it does with each victim is the reap policy's (typically SIGKILL,
    reprioritise the victim, process_mrelease())."""

    def __init__(self, name: str, kernel: Kernel, *, thread_kw: dict[str, Any], costs: LmkdCosts,
                 kill_method: KillMethod, victim_cpus: list[int], victim_nice: int, reap: ReapPolicy,
                 victim_group: CpuGroup = NO_GROUP) -> None:
        super().__init__(name)
        self.kernel = kernel
        self.thread: Thread = kernel.scheduler.spawn(name, self, **thread_kw)
        self.kill_method = kill_method
        frame = ("set_process_group_and_prio",)
        self.set_prio = (Lock(CGROUP_MUTEX, frame), Compute(costs.set_prio_ns, frame),
                         Unlock(CGROUP_MUTEX))
        self.victim_cpus = victim_cpus
        #: the cpu cgroup that goes with the victims' cpuset (its uclamp and latency hint)
        self.victim_group = victim_group
        self.victim_nice = victim_nice
        #: lmkd's costs (pidfd_send_signal()'s, for a remedy that sends the signal itself)
        self.costs = costs
        self.reap = reap
        self.esrch = 0
        self.reaps = 0

    def _process_mrelease(self, victim: Process) -> Iterator[Step]:
        if (yield from process_mrelease(self.kernel, victim, self.log)):
            self.reaps += 1
        else:
            self.esrch += 1

    async def run(self, steps: Iterable[Step]) -> None:
        """Run a work program on this reaper's thread."""
        await self.kernel.scheduler.execute(self.thread, steps)

    async def kill(self, victim: Process) -> None:
        """Kill ``victim`` with the kill policy's steps."""
        await self.run(self.kill_method.steps(victim))

    async def reprioritise(self, victim: Process) -> None:
        """set_process_group_and_prio(): the victim's cgroup move (under cgroup_mutex) and its nice and cpus."""
        await self.run(self.set_prio)
        if victim.exited_at is None:
            self.kernel.scheduler.reconfigure(victim.thread, nice=self.victim_nice, cpus=self.victim_cpus,
                                              group=self.victim_group)

    async def mrelease(self, victim: Process) -> None:
        """process_mrelease(pidfd, 0): reap the victim's mm, or fail with ESRCH once its exit has taken it."""
        await self.run(self._process_mrelease(victim))

    async def main(self) -> None:
        while True:
            request: ReapRequest = await self.receive()
            await self.reap.handle(self, request.victim)
            if request.reply_to is not None:
                self.send(request.reply_to, ReapDone(self, request.victim.pid))


class Lmkd(Actor):
    """lmkd's main thread. ``on_kill(victim, reason, min_adj, via)`` reports each kill decision.

    It learns everything from its mailbox: PSI events from the psi monitor, a reaper's ReapDone (it is
    free again), a victim's ProcessExited. :meth:`_take` folds each message into lmkd's state, whichever
    wait it arrives in."""

    def __init__(self, name: str, kernel: Kernel, apps: list[Process], *, props: LmkdProps, costs: LmkdCosts,
                 thread_kw: dict[str, Any], kill_method: KillMethod, reapers: list[LmkdReaper],
                 on_kill: Callable[[Process, str, int, str], None] | None = None) -> None:
        super().__init__(name)
        self.kernel = kernel
        self.apps = apps
        self.props = props
        self.thread: Thread = kernel.scheduler.spawn(name, self, **thread_kw)
        self.reapers = reapers
        self.on_kill = on_kill
        self.costs = costs
        self.kill_method = kill_method
        #: reapers that told lmkd they are free (all, at first)
        self._idle: set[LmkdReaper] = set(reapers)
        #: the trigger of the last PSI event received and not yet acted on
        self._psi: str | None = None
        self._exited: set[int] = set()
        self._critical = False
        self.cycles = 0
        self.kills = 0
        self.kill_timeouts = 0

    def _take(self, message: PsiEvent | ReapDone | ProcessExited) -> None:
        if type(message) is PsiEvent:
            self._psi = message.trigger
            if message.trigger == "critical":
                self._critical = True
        elif type(message) is ReapDone:
            self._idle.add(message.reaper)
        elif type(message) is ProcessExited:
            self._exited.add(message.pid)
        else:
            raise TypeError(f"lmkd: unexpected message {message!r}")

    async def _wait(self, timeout_ns: int, until: Callable[[], bool]) -> bool:
        """Take messages until ``until()`` holds (True), or ``timeout_ns`` passes first (False)."""
        deadline = self.now + timeout_ns
        while True:
            message = await self.receive(until_ns=deadline)
            if message is None:
                return False
            self._take(message)
            if until():
                return True

    def _state(self) -> MemoryState:
        mem = self.kernel.memory
        return MemoryState(free=mem.free, file_cache=mem.cache, wmark_min=mem.wmark_min, wmark_low=mem.wmark_low,
                           swap_free=mem.swap_total - mem.swap_used, swap_total=mem.swap_total)

    def _swap_low(self) -> bool:
        mem = self.kernel.memory
        return swap_is_low(mem.swap_total - mem.swap_used, mem.swap_total, self.props.swap_free_low_percentage)

    def _free_reaper(self) -> LmkdReaper | None:
        """The first reaper that is free, after taking the messages already delivered (a reaper that finished
        while lmkd was deciding has said so)."""
        while (message := self.poll()) is not None:
            self._take(message)
        return next((r for r in self.reapers if r in self._idle), None)

    async def _cycle(self, after_kill: bool) -> bool:
        """One poll: read state, maybe kill one process and wait for it. True if it killed."""
        self.cycles += 1
        sched = self.kernel.scheduler
        await sched.execute(self.thread, [Compute(self.costs.cycle_ns, ("lmkd", "mp_event_psi"))])
        state = self._state()
        if self.props.use_minfree_levels:
            decision = minfree_kill_decision(state, self.props.minfree_levels)
        else:
            decision = psi_kill_decision(state, self.props, critical=self._critical, after_kill=after_kill)
        self._critical = False
        if decision is None:
            return False
        reason, min_adj = decision
        victim = choose_victim(self.apps, min_adj, self.props)
        if victim is None:
            self.log("lmkd_no_victim", reason=reason, min_adj=min_adj)
            return False
        await sched.execute(self.thread, [Compute(self.costs.kill_ns, ("lmkd", "find_and_kill_process"))])
        reaper = self._free_reaper()
        self.kills += 1
        via = reaper.name if reaper is not None else self.name
        self.log("lmkd_kill", pid=victim.pid, victim=victim.name, adj=victim.adj, reason=reason, min_adj=min_adj,
                 free_pages=state.free, via=via)
        if self.on_kill is not None:
            self.on_kill(victim, reason, min_adj, via)
        if reaper is not None:
            self._idle.discard(reaper)
            self.send(reaper, ReapRequest(victim, self))
        else:
            await sched.execute(self.thread, self.kill_method.steps(victim))
        victim.notify_exit(self)
        if victim.exited_at is None:
            if not await self._wait(self.props.kill_timeout_ns, lambda: victim.pid in self._exited):
                self.kill_timeouts += 1
        return True

    async def main(self) -> None:
        while True:
            while self._psi is None:
                self._take(await self.receive())
            trigger, self._psi = self._psi, None
            self.log("lmkd_poll_start", trigger=trigger)
            polling_until = self.now + self.props.psi_window_ns
            killing = False
            after_kill = False
            while True:
                self._psi = None
                after_kill = await self._cycle(after_kill)
                if after_kill:
                    killing = True
                    polling_until = self.now + self.props.psi_window_ns
                    continue
                if self.kernel.memory.psi.stalled:
                    polling_until = max(polling_until, self.now + self.props.poll_period_short_ns)
                if self.now >= polling_until:
                    self.log("lmkd_poll_stop", cycles=self.cycles, kills=self.kills)
                    break
                props = self.props
                period = props.poll_period_short_ns if killing or self._swap_low() else props.poll_period_long_ns
                if await self._wait(period, lambda: self._psi is not None):
                    polling_until = self.now + self.props.psi_window_ns
