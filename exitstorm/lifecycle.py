"""How exitstorm's processes end: children with their parent, and SIGTERM or SIGHUP the way SIGINT is.

A worker or a victim process that outlived a killed parent would go on
writing into results nobody owns (or hold the host's swap), so each asks the
kernel to SIGKILL it when its parent dies. A SIGTERM (what a service manager
or a job runner sends) or a SIGHUP (a closed terminal) interrupts the main
thread as Ctrl-C does, so the same clean-up runs, and the command exits
with 128 + the signal's number (143, 129).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import threading
from types import FrameType
from typing import Any, Callable, Iterator

PR_SET_PDEATHSIG = 1  # include/uapi/linux/prctl.h
#: the signals that end a command the way Ctrl-C does
ENDING = (signal.SIGTERM, signal.SIGHUP)
#: the ending signals, Ctrl-C's included
HELD = (signal.SIGINT, *ENDING)
#: the ending signals received, in order
_received: list[int] = []


def die_with_parent(parent: int) -> bool:
    """SIGKILL this process when its parent dies; False if ``parent`` is already gone (the caller should
    exit: the signal would never come)."""
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    return os.getppid() == parent


def _ending(signum: int, frame: FrameType | None) -> None:
    """Record the signal, then end the command as Ctrl-C does (a simulation replaces this handler with
    :func:`deferred_interrupts`' while it runs, so the interrupt is never raised inside an actor's step)."""
    _received.append(signum)
    raise KeyboardInterrupt


def terminate_like_interrupt() -> None:
    """From now on, SIGINT (unless ignored), SIGTERM and SIGHUP record themselves and raise KeyboardInterrupt;
    none received yet."""
    _received.clear()
    for signum in ENDING:
        signal.signal(signum, _ending)
    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
        signal.signal(signal.SIGINT, _ending)


def interrupted() -> bool:
    """Whether an ending signal came since :func:`terminate_like_interrupt`."""
    return bool(_received)


def raise_if_interrupted() -> None:
    """Raise KeyboardInterrupt if an ending signal came, even one whose KeyboardInterrupt was lost: Python
    cannot raise it inside an at-fork callback or a finalizer (it prints "Exception ignored" and goes on),
    so whatever publishes results calls this first, and nothing is published after an interrupt."""
    if _received:
        raise KeyboardInterrupt


def interrupted_status() -> int:
    """The exit status of a command ended by an interrupt: 128 + the first ending signal (SIGINT if none)."""
    return 128 + (_received[0] if _received else signal.SIGINT)


@contextlib.contextmanager
def deferred_interrupts(stop: Callable[[], None]) -> Iterator[None]:
    """Inside, SIGINT (unless ignored), SIGTERM and SIGHUP only record themselves and call ``stop()`` (a
    simulation's runtime then ends between two steps); the interrupt is raised when the block is left.

    Raising in a handler would land in the middle of an actor's step and leave it half done. Off the main
    thread (a Dask worker's thread) signals are not this thread's to take: nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[int] = []

    def record(signum: int, _frame: FrameType | None) -> None:
        pending.append(signum)
        stop()

    watched = [s for s in HELD if signal.getsignal(s) is not signal.SIG_IGN]
    previous = {s: signal.signal(s, record) for s in watched}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    if pending:
        _received.append(pending[0])
        raise KeyboardInterrupt

_holding = False


@contextlib.contextmanager
def held_signals() -> Iterator[None]:
    """Ctrl-C, SIGTERM and SIGHUP wait until the block is done; one that came meanwhile is then raised as
    KeyboardInterrupt. Blocked in this thread (and so in the tools and children it starts), and only recorded
    if another thread of the process takes it. A block inside another is part of it.

    Around a change to the host, so that it is never left half made; around a fork, because Python runs its
    at-fork callbacks (logging's lock release) inside ``os.fork`` and an interrupt raised there is printed as
    "Exception ignored" with a traceback and lost, and so that the caller records the child's pid before an
    interrupt ends it. A child forked inside calls :func:`release_signals`."""
    global _holding
    if _holding:
        yield
        return
    with deferred_interrupts(lambda: None):
        previous = signal.pthread_sigmask(signal.SIG_BLOCK, HELD)
        _holding = True
        try:
            yield
        finally:
            _holding = False
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def release_signals(disposition: Any = signal.SIG_DFL) -> None:
    """In a child forked inside :func:`held_signals`: Ctrl-C, SIGTERM and SIGHUP get ``disposition`` (those
    ignored stay ignored, unless it is SIG_IGN) and are taken again."""
    for signum in HELD:
        if disposition is signal.SIG_IGN or signal.getsignal(signum) is not signal.SIG_IGN:
            signal.signal(signum, disposition)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, HELD)
