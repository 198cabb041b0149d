"""pidfd_send_signal(SIGKILL): what lmkd does today."""

from __future__ import annotations

from typing import Iterator

from actors.cpu.work import Compute, Step
from actors.kernel.process import Process
from policies.kill import KILL


@KILL.register("sigkill")
class SigKill:
    """pidfd_send_signal(SIGKILL): a short syscall in the killing thread."""

    def __init__(self, params: None = None, *, signal_ns: int) -> None:
        self.signal_ns = signal_ns

    def steps(self, victim: Process) -> Iterator[Step]:
        yield Compute(self.signal_ns, ("pidfd_send_signal",))
        victim.signal()
