"""The messages actors send each other, named after what happens.

Every asynchronous edge between two actors is ``sender.send(receiver,
message)`` onto the receiver's mailbox (a trio channel), delivered as an
event at the current instant of virtual time; an actor learns another's
state only from the messages it received. A work program's end is a message
too: :class:`actors.cpu.work.WorkDone`, to the thread's owner
(:meth:`actors.cpu.scheduler.Scheduler.start`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Iterator

from attrs import frozen

if TYPE_CHECKING:
    from actors.kernel.process import Process
    from actors.runtime.actor import Actor
    from actors.cpu.work import Step


@frozen
class PsiEvent:
    """A PSI trigger fired (the psi monitor to lmkd): ``trigger`` is ``medium`` (some) or ``critical`` (full)."""

    trigger: str


@frozen
class ReapRequest:
    """lmkd hands a victim to one of its reaper threads; the reaper answers ``reply_to`` with a ReapDone."""

    victim: Process
    reply_to: Actor | None


@frozen
class ReapDone:
    """A reaper thread is done with its victim and free for the next one."""

    reaper: Actor
    pid: int


@frozen
class ProcessExited:
    """A process's thread group is gone (its pidfd became readable), to whoever watches it."""

    pid: int


@frozen
class WakeKswapd:
    """Free memory fell under the low watermark (wakeup_kswapd(), to a kswapd that sleeps)."""


@frozen
class SignalWakeUp:
    """The kernel woke a task for a fatal signal (signal_wake_up()): a SIGKILLed process starts its exit."""


@frozen
class OomReapRequest:
    """A victim is on the oom_reaper's list (wake_up(&oom_reaper_wait), to a sleeping oom_reaper kthread); the
    kthread reaps it and every other victim queued by then."""


@frozen
class WorkItem:
    """A work item is queued and this kworker was idle (queue_work() waking a worker): it runs ``work`` and
    then whatever else is pending. ``work`` makes the item's work program."""

    work: Callable[[], Iterator[Step]]


@frozen
class PreviewStart:
    """The camera is ready (to its preview thread): release the first frame at ``start_ns``."""

    start_ns: int
