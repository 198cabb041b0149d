"""A process: an address space and a main thread; killed, it runs the kernel's exit path.

Before the kill the main thread does its user-space activity (if any); a
SIGKILL cuts user work short (kernel work in progress runs to the next user
step), then the same thread runs do_exit, in kernel context, at its own
scheduling class.
"""

from __future__ import annotations

from typing import Any, Callable, Generator, Iterator

from actors.cpu.scheduler import Thread
from actors.cpu.work import Step
from actors.kernel.exit_path import ZapWork
from actors.kernel.kernel import Kernel
from actors.kernel.memory import MM
from actors.messages import ProcessExited, SignalWakeUp
from actors.runtime.actor import Actor, Signal


def process_mrelease(kernel: Kernel, victim: "Process", log: Callable[..., None]) -> Generator[Step, None, bool]:
    """process_mrelease(pidfd) from the caller's thread: reap the killed victim's mm alongside its exit.

    Fails with ESRCH (no work) once the exit has taken the mm (exit_mm). ``log``
    is the caller's event log.
    """
    zap = victim.zap
    if zap.mm_detached:
        log("process_mrelease", pid=victim.pid, result="ESRCH")
        return False
    yield from kernel.reap_program(zap, "process_mrelease")
    log("process_mrelease", pid=victim.pid, result="ok", anon_pages=zap.reaped[0], swap_pages=zap.reaped[1])
    return True


class Process(Actor):
    """A process with one (main) thread; ``adj`` is its oom_score_adj.

    At the kill its thread switches to ``exit_class`` for CPU accounting, its
    mm stops being reclaimed, and the teardown work (:class:`ZapWork`) is
    set up so that reapers can share it. Exit watchers (a pidfd becoming
    readable) are called when the thread group is gone.
    """

    def __init__(
        self,
        name: str,
        kernel: Kernel,
        mm: MM,
        thread_kw: dict[str, Any],
        activity: Callable[[], Iterator[Step]] | None = None,
        exit_class: str | None = None,
    ) -> None:
        super().__init__(name)
        self.kernel = kernel
        self.mm = mm
        self.pid = mm.pid
        self.adj = mm.adj
        self.activity = activity
        self.exit_class = exit_class
        self.thread: Thread = kernel.scheduler.spawn(name, self, **thread_kw)
        self.zap: ZapWork | None = None
        self.killed_at: int | None = None
        self.freed_at: int | None = None
        self.exited_at: int | None = None
        self.swapped_at_kill = 0
        self.resident_at_kill = 0
        self._exit_watchers: list[Callable[["Process"], None]] = []
        #: ``(process)`` when it is SIGKILLed
        self.killed = Signal(f"{name}.killed")
        #: ``(process)`` when all its anon memory and swap are freed (possibly after its exit)
        self.mm_freed = Signal(f"{name}.mm_freed")

    def notify_exit(self, actor: Actor) -> None:
        """Send ``actor`` a ProcessExited when the process has exited (now, if it already has): a pidfd
        that becomes readable."""
        if self.exited_at is not None:
            self.send(actor, ProcessExited(self.pid))
        else:
            self._exit_watchers.append(lambda proc: proc.send(actor, ProcessExited(proc.pid)))

    def watch_exit(self, fn: Callable[["Process"], None]) -> None:
        """Call ``fn(process)`` when the process has exited (at once if it already has)."""
        if self.exited_at is not None:
            fn(self)
        else:
            self._exit_watchers.append(fn)

    def signal(self) -> None:
        """Deliver SIGKILL as an event at this instant: safe from inside another thread's work program."""
        self.runtime.at(self.now, lambda _: self.kill())

    def kill(self) -> None:
        """SIGKILL (from whichever actor or event calls it); a second one is a no-op."""
        if self.killed_at is not None:
            return
        self.killed_at = self.now
        mm = self.mm
        self.swapped_at_kill = mm.swap
        self.resident_at_kill = mm.anon + mm.file
        self.log("kill", pid=self.pid, adj=self.adj, swap_pages=mm.swap, anon_pages=mm.anon, file_pages=mm.file)
        self.zap = self.kernel.teardown(mm, self._freed)
        sched = self.kernel.scheduler
        if self.exit_class is not None:
            sched.reconfigure(self.thread, thread_class=self.exit_class)
        sched.interrupt(self.thread)
        self.runtime.post(self, SignalWakeUp())  # a process waiting for work wakes to exit
        self.killed.emit(self)

    def _freed(self) -> None:
        self.freed_at = self.now
        self.log("mm_freed", pid=self.pid, kill_to_freed_ns=self.freed_at - self.killed_at,
                 reaped_anon_pages=self.zap.reaped[0], reaped_swap_pages=self.zap.reaped[1])
        self.mm_freed.emit(self)

    async def main(self) -> None:
        sched = self.kernel.scheduler
        while self.killed_at is None:
            if self.activity is not None:
                await sched.execute(self.thread, self.activity())
            else:
                await self.receive()
        await sched.execute(self.thread, self.kernel.exit_program(self.zap))
        self.exited_at = self.now
        self.log("exit", pid=self.pid, kill_to_exit_ns=self.exited_at - self.killed_at)
        watchers, self._exit_watchers = self._exit_watchers, []
        for fn in watchers:
            fn(self)
