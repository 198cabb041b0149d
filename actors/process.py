"""A process: an address space and a main thread; killed, it runs the kernel's exit path.

Before the kill the main thread does its user-space activity (if any); a
SIGKILL cuts user work short (kernel work in progress runs to the next user
step), then the same thread runs do_exit, in kernel context, at its own
scheduling class.
"""

from __future__ import annotations

from typing import Any, Callable, Iterator

from actors.kernel import Kernel
from actors.memory import MM
from actors.runtime import Actor
from actors.scheduler import Thread
from actors.work import Step


class Process(Actor):
    def __init__(
        self,
        name: str,
        kernel: Kernel,
        mm: MM,
        thread_kw: dict[str, Any],
        activity: Callable[[], Iterator[Step]] | None = None,
        on_exit: Callable[["Process"], None] | None = None,
    ) -> None:
        super().__init__(name)
        self.kernel = kernel
        self.mm = mm
        self.pid = mm.pid
        self.activity = activity
        self.on_exit = on_exit
        self.thread: Thread = kernel.scheduler.spawn(name, self, **thread_kw)
        self.killed_at: int | None = None
        self.freed_at: int | None = None
        self.exited_at: int | None = None
        self.swapped_at_kill = 0
        self.resident_at_kill = 0

    def kill(self) -> None:
        """SIGKILL (from whichever actor or event calls it)."""
        if self.killed_at is not None:
            return
        self.killed_at = self.now
        mm = self.mm
        self.swapped_at_kill = mm.swap
        self.resident_at_kill = mm.anon + mm.file
        self.log("kill", pid=self.pid, swap_pages=mm.swap, anon_pages=mm.anon, file_pages=mm.file)
        self.kernel.scheduler.interrupt(self.thread)
        self.send(self, "SIGKILL")

    def _freed(self) -> None:
        self.freed_at = self.now
        self.log("mm_freed", pid=self.pid)

    async def main(self) -> None:
        sched = self.kernel.scheduler
        while self.killed_at is None:
            if self.activity is not None:
                await sched.execute(self.thread, self.activity())
            else:
                await self.receive()
        await sched.execute(self.thread, self.kernel.exit_program(self.mm, self._freed))
        self.exited_at = self.now
        self.log("exit", pid=self.pid, kill_to_exit_ns=self.exited_at - self.killed_at)
        if self.on_exit is not None:
            self.on_exit(self)


class SimultaneousKill(Actor):
    """SIGKILLs a set of processes together at one instant (a storm, as in a test harness)."""

    passive = True

    def __init__(self, name: str, targets: list[Process], at_ns: int) -> None:
        super().__init__(name)
        self.targets = targets
        self.at_ns = at_ns

    def on_start(self) -> None:
        self.runtime.at(self.at_ns, self._fire)

    def _fire(self, _arg: object) -> None:
        for proc in self.targets:
            proc.kill()
