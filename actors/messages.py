"""The messages actors send each other, named after what happens.

Every asynchronous edge between two actors is ``sender.send(receiver,
message)`` onto the receiver's mailbox (a trio channel), delivered as an
event at the current instant of virtual time; an actor learns another's
state only from the messages it received.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from attrs import frozen

if TYPE_CHECKING:
    from actors.process import Process
    from actors.runtime import Actor


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
