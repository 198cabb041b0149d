"""Deterministic virtual-time actor runtime on trio.

Actors are trio tasks with a mailbox (a trio memory channel). Virtual time is
an integer count of nanoseconds owned by the :class:`Runtime`; it advances only
when the world is quiescent, i.e. no actor is runnable and nothing is due at
the current instant.

Determinism does not depend on trio's (deliberately randomised) task order:
the runtime wakes **one actor at a time** and waits until it has parked again
before it takes the next due event. Everything an actor does while it runs
(sending a message, arming a timer, handing work to the CPU scheduler) is
therefore applied in a single, reproducible order, and the event queue can be
ordered by ``(time, insertion sequence)`` alone. Messages are never handed
over directly: a send is an event at the current instant (or later), so a
message is "in flight" until the runtime delivers it.

Quiescence is tracked by an activity counter, not by
``trio.testing.MockClock(autojump_threshold=0)``: the autojump clock needs a
full trio scheduling pass to notice that everyone is blocked, which measured
five times slower (docs/design.md §3). The CPU scheduler (a
:class:`Participant`) and passive actors (threads whose behaviour is a work
program) have no task at all; they are driven by event callbacks, so their
hot path never switches trio tasks.
"""

from __future__ import annotations

import hashlib
import heapq
import itertools
import random
from typing import Any, Callable, Iterator, TypeVar

import trio
from trio.lowlevel import Abort, current_task, reschedule, wait_task_rescheduled

from actors.runtime.events import EventLog
from actors.runtime.quantities import NS_PER_MS

class Signal:
    """A hook that several parties may subscribe to: ``emit(*args)`` calls every subscriber, in the order
    they connected (so the order is the assembly's, and reproducible). Subscribers connect at assembly; a
    part that listens only while it needs to (PSI while a task stalls) connects and disconnects itself."""

    __slots__ = ("name", "subscribers")

    def __init__(self, name: str) -> None:
        self.name = name
        self.subscribers: tuple[Callable[..., None], ...] = ()

    def connect(self, fn: Callable[..., None]) -> None:
        if fn in self.subscribers:
            raise ValueError(f"{self.name}: {fn!r} is already connected")
        self.subscribers += (fn,)

    def disconnect(self, fn: Callable[..., None]) -> None:
        if fn not in self.subscribers:
            raise ValueError(f"{self.name}: {fn!r} is not connected")
        self.subscribers = tuple(f for f in self.subscribers if f != fn)

    def emit(self, *args: Any) -> None:
        """Call every subscriber (a hot path tests ``signal.subscribers`` first, a tuple's own truth)."""
        for fn in self.subscribers:
            fn(*args)


class ActorFailed(Exception):
    """An actor (or an event callback it owns) raised; names it and the virtual time."""

    def __init__(self, actor: str, t_ns: int, cause: BaseException | str) -> None:
        self.actor = actor
        self.t_ns = t_ns
        self.cause = cause if isinstance(cause, str) else repr(cause)
        super().__init__(f"actor {actor!r} failed at t={t_ns} ns ({t_ns / NS_PER_MS:.6f} ms): {self.cause}")

    def __reduce__(self) -> tuple[type, tuple[str, int, str]]:
        """Picklable (as text), so that a failure in a worker process reaches the parent."""
        return ActorFailed, (self.actor, self.t_ns, self.cause)


def stream_seed(seed: int, name: str) -> int:
    """The seed of an actor's private random stream: a hash of (seed, name).

    Streams are independent of how many other actors exist or in which order
    they draw, so adding an actor never perturbs the others.
    """
    digest = hashlib.sha256(f"{seed}/{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


def _abort_ok(_raise_cancel: Any) -> Abort:
    return Abort.SUCCEEDED


class _Expired:
    """The deadline of a receive passed (a runtime message, never returned to the actor)."""

    __slots__ = ("token",)

    def __init__(self, token: int) -> None:
        self.token = token


class Participant:
    """A named part of the simulated world that the runtime starts (:meth:`on_start`) and ends
    (:meth:`on_end`) and gives a random stream of its own; it acts only through the events it schedules
    with :meth:`Runtime.at`. The CPU scheduler is one; an :class:`Actor` is one with a task and a mailbox."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.runtime: Runtime | None = None
        self.rng: random.Random | None = None

    def on_start(self) -> None:
        """Called at t=0 (in registration order) before any actor runs."""

    def on_end(self) -> None:
        """Called once when the run ends, at the final virtual time."""

    @property
    def now(self) -> int:
        return self.runtime.now

    def log(self, event: str, category: str = "actor", **fields: Any) -> None:
        rt = self.runtime
        rt.events.emit(category, rt.now, self.name, event, **fields)

    def send(self, to: "Actor", message: Any, delay_ns: int = 0) -> None:
        """Post ``message`` to ``to``'s mailbox, delivered ``delay_ns`` from now (as an event: after the
        current one)."""
        self.runtime.post(to, message, delay_ns)


class Actor(Participant):
    """A participant with a trio task (:meth:`main`) and a mailbox (:meth:`receive`).

    A *passive* actor (``passive = True``) is a set of threads whose whole
    behaviour is a work program the CPU scheduler runs: it gets no task and
    no mailbox, so the scheduler's hot path never switches trio tasks for it.
    """

    passive = False

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self._task: Any = None
        self._wake_value: Any = None
        self._receiving = False
        self._inbox_send: trio.MemorySendChannel[Any] | None = None
        self._inbox_recv: trio.MemoryReceiveChannel[Any] | None = None
        #: the virtual time a receive is waiting until, and the token of its expiry event
        self._deadline: int | None = None
        self._deadline_token = 0

    async def main(self) -> None:
        """The actor's behaviour; returns when it has nothing more to do."""

    async def receive(self, until_ns: int | None = None) -> Any:
        """The next message in this actor's mailbox, waiting if it is empty; with ``until_ns``, None once
        virtual time reaches it first. Successive calls with the same ``until_ns`` are one wait."""
        if until_ns is not None and until_ns != self._deadline:
            self._deadline = until_ns
            self._deadline_token += 1
            self.runtime.at(until_ns, self.runtime._expire, (self, self._deadline_token))
        while True:
            try:
                message = self._inbox_recv.receive_nowait()
            except trio.WouldBlock:
                self._receiving = True
                self.runtime._deactivate()
                message = await self._inbox_recv.receive()
            if type(message) is not _Expired:
                return message
            if until_ns is not None and message.token == self._deadline_token:
                self._deadline = None
                return None
            # the deadline of a wait that a message ended: nothing to do

    def poll(self) -> Any:
        """The next message in this actor's mailbox, or None if it is empty (never waits)."""
        while True:
            try:
                message = self._inbox_recv.receive_nowait()
            except trio.WouldBlock:
                return None
            if type(message) is not _Expired:
                return message

    async def sleep_until(self, t_ns: int) -> None:
        rt = self.runtime
        rt.at(max(t_ns, rt.now), rt._resume, self)
        await self.park()

    async def sleep(self, ns: int) -> None:
        await self.sleep_until(self.runtime.now + ns)

    async def park(self) -> Any:
        """Block until something calls :meth:`Runtime.wake` for this actor; return its value."""
        self._task = current_task()
        self.runtime._deactivate()
        await wait_task_rescheduled(_abort_ok)
        value, self._wake_value = self._wake_value, None
        return value


P = TypeVar("P", bound=Participant)


def _has_task(participant: Participant) -> bool:
    """An actor that is not passive gets a trio task and a mailbox."""
    return isinstance(participant, Actor) and not participant.passive


class Runtime:
    """Owns virtual time, the event queue, the actors and their random streams."""

    def __init__(self, seed: int, end_ns: int | None = None, events: EventLog | None = None) -> None:
        self.seed = seed
        self.end_ns = end_ns
        self.events = events if events is not None else EventLog(None)
        self.now = 0
        self.actors: dict[str, Participant] = {}
        self.events_processed = 0
        self._heap: list[tuple[int, int, Callable[[Any], None], Any]] = []
        self._seq = itertools.count(1)
        self._active = 0
        self._driver: Any = None
        self._driver_waiting = False
        #: set by :meth:`stop`: the run ends at the next point where no actor is mid-step
        self.stopped = False

    # -- assembly ----------------------------------------------------------
    def add(self, actor: P) -> P:
        if actor.name in self.actors:
            raise ValueError(f"duplicate actor name {actor.name!r}")
        actor.runtime = self
        actor.rng = random.Random(stream_seed(self.seed, actor.name))
        self.actors[actor.name] = actor
        if _has_task(actor):
            actor._inbox_send, actor._inbox_recv = trio.open_memory_channel(float("inf"))
        return actor

    # -- events --------------------------------------------------------------
    def at(self, t_ns: int, fn: Callable[[Any], None], arg: Any = None) -> None:
        """Call ``fn(arg)`` at virtual time ``t_ns`` (not before now)."""
        if t_ns < self.now:
            raise ValueError(f"cannot schedule at t={t_ns} ns, before now={self.now} ns")
        heapq.heappush(self._heap, (t_ns, next(self._seq), fn, arg))

    def event_queue(self) -> tuple[list[tuple[int, int, Callable[[Any], None], Any]], Iterator[int]]:
        """The event heap and its sequence counter, for a hot path that pushes ``(t, next(seq), fn, arg)``
        itself (skipping :meth:`at`'s check that ``t`` is not in the past)."""
        return self._heap, self._seq

    def post(self, to: Actor, message: Any, delay_ns: int = 0) -> None:
        """Deliver ``message`` to ``to``'s mailbox ``delay_ns`` from now, as an event (from an actor:
        :meth:`Actor.send`; from a test or the kernel's own code, such as a signal's delivery)."""
        heapq.heappush(self._heap, (self.now + delay_ns, next(self._seq), self._deliver, (to, message)))

    def _expire(self, arg: tuple[Actor, int]) -> None:
        actor, token = arg
        self._deliver((actor, _Expired(token)))

    def wake(self, actor: Actor, value: Any = None) -> None:
        """Resume a parked actor with ``value``, as an event at the current instant."""
        self.at(self.now, self._resume_with, (actor, value))

    def _resume_with(self, arg: tuple[Actor, Any]) -> None:
        actor, value = arg
        actor._wake_value = value
        self._resume(actor)

    def _resume(self, actor: Actor) -> None:
        self._active += 1
        reschedule(actor._task)

    def _deliver(self, arg: tuple[Actor, Any]) -> None:
        actor, message = arg
        if actor._receiving:
            actor._receiving = False
            self._active += 1
        actor._inbox_send.send_nowait(message)

    def _deactivate(self) -> None:
        self._active -= 1
        if self._active == 0 and self._driver_waiting:
            self._driver_waiting = False
            reschedule(self._driver)

    async def _quiesce(self) -> None:
        if self._active:
            self._driver_waiting = True
            await wait_task_rescheduled(_abort_ok)

    # -- running -------------------------------------------------------------
    async def _bootstrap(self, actor: Actor) -> None:
        try:
            await actor.park()
            await actor.main()
        except trio.Cancelled:
            raise
        except Exception as exc:
            raise ActorFailed(actor.name, self.now, exc) from exc
        self._deactivate()

    async def run(self) -> None:
        """Run until ``end_ns`` or until nothing is left to do."""
        try:
            async with trio.open_nursery() as nursery:
                self._driver = current_task()
                for actor in self.actors.values():
                    actor.on_start()
                    if _has_task(actor):
                        self._active += 1
                        nursery.start_soon(self._bootstrap, actor, name=actor.name)
                        self.at(0, self._resume, actor)
                while True:
                    await self._quiesce()
                    if not self._heap or self._past_end() or self.stopped:
                        break
                    self._run_until_an_actor_wakes()
                nursery.cancel_scope.cancel()
        except BaseExceptionGroup as group:
            raise _first_failure(group) from None
        if self.end_ns is not None:
            self.now = max(self.now, self.end_ns)
        for actor in self.actors.values():
            actor.on_end()

    def stop(self) -> None:
        """End the run early, where every actor is between steps (safe from a signal handler: it only sets a
        flag); :attr:`stopped` tells the caller the run did not finish."""
        self.stopped = True

    def _past_end(self) -> bool:
        return self.end_ns is not None and self._heap[0][0] > self.end_ns

    def _run_until_an_actor_wakes(self) -> None:
        """Pop and run due events until one wakes an actor, or none are left."""
        heap = self._heap
        pop = heapq.heappop
        end = self.end_ns
        processed = 0
        fn = None
        try:
            while heap:
                t = heap[0][0]
                if end is not None and t > end:
                    break
                t, _, fn, arg = pop(heap)
                self.now = t
                processed += 1
                fn(arg)
                if self._active:
                    break
        except ActorFailed:
            raise
        except Exception as exc:
            owner = getattr(fn, "__self__", None)
            raise ActorFailed(getattr(owner, "name", repr(fn)), self.now, exc) from exc
        finally:
            self.events_processed += processed


def _first_failure(group: BaseExceptionGroup) -> BaseException:
    """The root failure of a run, unwrapped from trio's exception groups."""
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            return _first_failure(exc)
        if not isinstance(exc, trio.Cancelled):
            return exc
    return group
