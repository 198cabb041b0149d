"""Steps of a work program, and the result of running one.

An actor hands the CPU scheduler a *work program* for one of its threads: an
iterable (possibly an endless generator) of the steps below, or of tuples of
them (a compiled run the scheduler walks itself). The scheduler
executes it analytically, computing when each step ends, and wakes the actor
only when the whole program is done. Frames are kernel/user function names,
outermost first, so CPU time can be folded into a flame graph.
"""

from __future__ import annotations

from typing import Any, Literal

from attrs import field, frozen

Frame = tuple[str, ...]


def folded(frame: Frame) -> str:
    """A frame as a folded-stack line's stack: ``outer;inner``."""
    return ";".join(frame)


def unfolded(stack: str) -> Frame:
    return tuple(stack.split(";")) if stack else ()


def _non_negative(_inst: Any, attribute: Any, value: int) -> None:
    if value < 0:
        raise ValueError(f"{attribute.name} must be >= 0, got {value}")


@frozen
class Compute:
    """Burn ``ns`` of CPU at capacity 1.0 (a core of capacity c takes ns / c).

    ``user`` work is cut short by a kill (:meth:`Scheduler.interrupt`); kernel
    work is not. A step through several frames in a row (holding the same
    locks) lists them in ``parts`` as ``(frame, ns)``, ns summing to ``ns``:
    its CPU time is split across them in proportion, so one scheduler event
    stands for the whole run of frames. ``touch`` lists shared cache lines
    (locks of kind ``line``) the step reads for ownership, as ``(name,
    count)``: each costs a cache-line transfer per access when another CPU
    touched it last, added to the step.
    """

    ns: int = field(validator=_non_negative)
    frame: Frame = ()
    user: bool = False
    parts: tuple[tuple[Frame, int], ...] = ()
    touch: tuple[tuple[str, int], ...] = ()
    #: ``frame`` and ``parts`` as folded-stack strings, the scheduler's accounting keys (a str caches its hash)
    stack: str = field(init=False, eq=False, repr=False)
    stack_parts: tuple[tuple[str, int], ...] = field(init=False, eq=False, repr=False)

    def __attrs_post_init__(self) -> None:
        object.__setattr__(self, "stack", folded(self.frame))
        object.__setattr__(self, "stack_parts", tuple((folded(f), ns) for f, ns in self.parts))


def _positive(_inst: Any, attribute: Any, value: int) -> None:
    if value < 1:
        raise ValueError(f"{attribute.name} must be >= 1, got {value}")


@frozen
class Lock:
    """Acquire a lock declared with :meth:`Scheduler.add_lock`; its kind says how waiters wait.

    ``mode`` is ``"read"`` for the shared side of rwlocks and rwsems. One step
    may stand for ``count`` acquisitions in the kernel (one per entry of a
    chunk); it matters for cache-line transfer costs.
    """

    name: str
    frame: Frame = ()
    mode: Literal["read", "write"] = "write"
    count: int = field(default=1, validator=_positive)
    #: the folded stack of ``frame``, where a cache-line transfer at this acquisition is charged
    stack: str = field(init=False, eq=False, repr=False)

    def __attrs_post_init__(self) -> None:
        object.__setattr__(self, "stack", folded(self.frame))


@frozen
class Unlock:
    name: str


@frozen
class Sleep:
    """Leave the CPU for ``ns`` (a timed wait: usleep, schedule_timeout)."""

    ns: int = field(validator=_non_negative)
    user: bool = False


@frozen
class SleepUntil:
    """Leave the CPU until absolute virtual time ``t_ns`` (no-op if it has passed)."""

    t_ns: int = field(validator=_non_negative)
    user: bool = False


@frozen
class CondResched:
    """cond_resched(): a point where kernel code lets a pending reschedule happen (it is the only one in kernel
    code under CONFIG_PREEMPT_NONE; under full preemption it changes nothing)."""


@frozen
class Marker:
    """Zero-cost step: tell the thread's marker hook that the program got here."""

    label: str
    data: Any = None


Step = Compute | Lock | Unlock | Sleep | SleepUntil | CondResched | Marker

#: the one cond_resched() step (it has no fields)
COND_RESCHED = CondResched()


@frozen
class WorkDone:
    """Result of a work program: when it ended and whether a kill cut it short."""

    t_ns: int
    interrupted: bool = False
