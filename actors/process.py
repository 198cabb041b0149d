"""A process: an address space and a main thread; killed, it runs the kernel's exit path.

Before the kill the main thread does its user-space activity (if any); a
SIGKILL cuts user work short (kernel work in progress runs to the next user
step), then the same thread runs do_exit, in kernel context, at its own
scheduling class.
"""

from __future__ import annotations

import collections
from typing import Any, Callable, Generator, Iterator

from actors.exit_path import ZapWork
from actors.kernel import Kernel
from actors.memory import MM
from actors.messages import ProcessExited, SignalWakeUp
from actors.runtime import Actor, Signal
from actors.scheduler import Scheduler, Thread
from actors.work import Compute, Marker, Step


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


class SimultaneousKill(Actor):
    """SIGKILLs a set of processes together at one instant (a storm, as in a test harness); ``on_sent()`` runs
    after the last."""

    def __init__(self, name: str, targets: list[Process], at_ns: int,
                 on_sent: Callable[[], None] | None = None) -> None:
        super().__init__(name)
        self.targets = targets
        self.at_ns = at_ns
        self.on_sent = on_sent

    async def main(self) -> None:
        await self.sleep_until(self.at_ns)
        for proc in self.targets:
            proc.kill()
        if self.on_sent is not None:
            self.on_sent()


class KillSender(Actor):
    """A thread that SIGKILLs a set of processes back to back from ``at_ns``, ``kill_ns`` of its CPU each (a
    test harness's main thread at SCHED_FIFO, as lmkd's sends its kills).

    Being on a core while it sends them is what matters: the victims it wakes
    find that core busy, and a thread it starts after the last kill
    (``on_sent()``) goes elsewhere.
    """

    passive = True

    def __init__(self, name: str, scheduler: Scheduler, targets: list[Process], at_ns: int, kill_ns: int,
                 thread_kw: dict[str, Any], on_sent: Callable[[], None] | None = None) -> None:
        super().__init__(name)
        if kill_ns <= 0 or at_ns < 0:
            raise ValueError(f"{name}: the cost of a kill must be > 0 and its start >= 0")
        self.scheduler = scheduler
        self.targets = targets
        self.at_ns = at_ns
        self.kill_ns = kill_ns
        self.on_sent = on_sent
        self.thread: Thread = scheduler.spawn(name, self, on_marker=self._kill, **thread_kw)

    def on_start(self) -> None:
        self.runtime.at(self.at_ns, self._begin)

    def _begin(self, _arg: object) -> None:
        self.scheduler.submit(self.thread, self._program())

    def _program(self) -> Iterator[Step]:
        frame = (self.name, "pidfd_send_signal")
        for i in range(len(self.targets)):
            yield Compute(self.kill_ns, frame)
            yield Marker("kill", i)

    def _kill(self, _thread: Thread, _label: str, i: int) -> None:
        self.targets[i].kill()
        if i == len(self.targets) - 1 and self.on_sent is not None:
            self.on_sent()


class MreleaseReapers(Actor):
    """Threads that call process_mrelease() on killed processes, each taking the next in kill order.

    A storm's stand-in for lmkd's reaper threads: what a harness does with a
    pidfd per victim after it has sent the SIGKILLs.
    """

    passive = True

    def __init__(self, name: str, kernel: Kernel, count: int, thread_kw: dict[str, Any]) -> None:
        super().__init__(name)
        self.kernel = kernel
        self.threads: list[Thread] = [kernel.scheduler.spawn(f"{name}{i}", self, **thread_kw) for i in range(count)]
        self._idle = list(self.threads)
        self._queue: collections.deque[Process] = collections.deque()
        self.reaps = 0
        self.esrch = 0

    def hand(self, victim: Process) -> None:
        """Queue a just-killed victim; an idle reaper thread starts on the queue."""
        self._queue.append(victim)
        if self._idle:
            th = self._idle.pop(0)
            self.kernel.scheduler.submit(th, self._work(), lambda _done, th=th: self._idle.append(th))

    def _work(self) -> Iterator[Step]:
        while self._queue:
            reaped = yield from process_mrelease(self.kernel, self._queue.popleft(), self.log)
            if reaped:
                self.reaps += 1
            else:
                self.esrch += 1
