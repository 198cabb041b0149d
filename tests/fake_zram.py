"""A ZRAM device in a directory (plain files for sysfs and /proc/swaps), for the harness's state machine
where no ZRAM is available; and a device, fake or real, that signals its own process at a chosen step."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from exitstorm.realkernel.zram import ZramDevice

HEADER = "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n"
ALGORITHMS = ("lzo-rle", "lzo", "lz4")


class FakeZram(ZramDevice):
    """/dev/zram0 as files under ``root``: disksize, comp_algorithm, swaps, and a swap signature."""

    def __init__(self, root: Path) -> None:
        super().__init__(dev=root / "zram0", sysfs=root / "sys", proc_swaps=root / "swaps")
        if not self.sysfs.exists():
            self.sysfs.mkdir(parents=True)
            self.dev.write_text("")
            self.sysfs.joinpath("disksize").write_text("0\n")
            self.set_comp_algorithm(ALGORITHMS[0])
            self.sysfs.joinpath("mm_stat").write_text("0 0 0\n")
            self.proc_swaps.write_text(HEADER)

    def require(self) -> None:
        """A fake is always there."""

    def state(self) -> tuple[bool, int, str, str]:
        return self.is_swap(), self.disksize(), self.comp_algorithm(), self.dev.read_text()

    def set_comp_algorithm(self, name: str) -> None:
        if self.sysfs.joinpath("disksize").exists() and self.disksize():
            raise OSError(16, "Device or resource busy")  # the kernel refuses once the device is sized
        self.sysfs.joinpath("comp_algorithm").write_text(
            " ".join(f"[{a}]" if a == name else a for a in ALGORITHMS) + "\n")

    def set_disksize(self, size_bytes: int) -> None:
        if self.disksize():
            raise OSError(16, "Device or resource busy")
        self.sysfs.joinpath("disksize").write_text(f"{size_bytes}\n")

    def reset(self) -> None:
        if self.is_swap():
            raise OSError(16, "Device or resource busy")
        self.sysfs.joinpath("disksize").write_text("0\n")
        self.dev.write_text("")

    def mkswap(self) -> None:
        if not self.disksize():
            raise subprocess.CalledProcessError(1, ["mkswap"], stderr="mkswap: error: swap area needs at least 40 KiB")
        self.dev.write_text("SWAPSPACE2")

    def swapon(self) -> None:
        if self.dev.read_text() != "SWAPSPACE2" or self.is_swap():
            raise subprocess.CalledProcessError(1, ["swapon"], stderr="swapon: read swap header failed")
        self.proc_swaps.write_text(HEADER + f"{self.dev}\tpartition\t{self.disksize() >> 10}\t0\t100\n")

    def swapoff(self) -> None:
        if not self.is_swap():
            raise subprocess.CalledProcessError(1, ["swapoff"], stderr="swapoff: Invalid argument")
        self.proc_swaps.write_text(HEADER)


def signalling(device: type[ZramDevice]) -> type[ZramDevice]:
    """``device`` whose steps named in ``signal_at`` (method name → signal) send that signal to this process
    once the step is done."""

    class Signalling(device):  # type: ignore[misc, valid-type]
        def __init__(self, *args: object, signal_at: dict[str, int], **kwargs: object) -> None:
            self.signal_at: dict[str, int] = {}
            super().__init__(*args, **kwargs)
            self.signal_at = dict(signal_at)

        def _after(self, step: str) -> None:
            if step in self.signal_at:
                os.kill(os.getpid(), self.signal_at.pop(step))

    for step in ("set_comp_algorithm", "set_disksize", "mkswap", "swapon", "swapoff", "reset"):
        def method(self: Signalling, *args: object, _step: str = step) -> None:
            getattr(super(Signalling, self), _step)(*args)
            self._after(_step)
        setattr(Signalling, step, method)
    return Signalling


SignallingFake = signalling(FakeZram)
SignallingZram = signalling(ZramDevice)


def killed_at(step: str, root: str, journal_dir: str) -> None:
    """Set up swap on the fake under ``root`` (or the real device if ``root`` is "real"), SIGKILLed right
    after ``step``: what a run killed there leaves behind."""
    from exitstorm.realkernel.zram import ZramSwap

    kill = {step: signal.SIGKILL}
    device = SignallingZram(signal_at=kill) if root == "real" else SignallingFake(Path(root), signal_at=kill)
    with ZramSwap(disksize_mb=256, device=device, journal_dir=Path(journal_dir)):
        os.kill(os.getpid(), signal.SIGKILL)


if __name__ == "__main__":
    killed_at(*sys.argv[1:])
