"""ZRAM swap on the real machine: found or set up for a measurement, then put back as it was.

``exitstorm calibrate`` and ``exitstorm validate`` need swap on ``/dev/zram0``
(Documentation/admin-guide/blockdev/zram.rst): if it is not already swap,
:class:`ZramSwap` picks a compressor, sizes the device, runs mkswap and
swapon, and on exit undoes exactly what it did (swapoff, and a reset of a
device it sized).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from types import TracebackType

ZRAM_DEV = Path("/dev/zram0")
ZRAM_SYS = Path("/sys/block/zram0")
PAGE_SIZE = 4096


class HostError(Exception):
    """The machine cannot run a real-kernel measurement: one line saying what is missing."""


def require_host() -> None:
    """Linux, root, a ZRAM device and the swap tools, or a HostError naming the first thing missing."""
    if not sys.platform.startswith("linux"):
        raise HostError(f"real-kernel measurements need Linux (this is {sys.platform})")
    if os.geteuid() != 0:
        raise HostError("real-kernel measurements need root (to set up ZRAM swap and reap processes); run as root")
    if not ZRAM_DEV.exists() or not ZRAM_SYS.exists():
        raise HostError(f"no ZRAM device: {ZRAM_DEV} is missing (load it with `modprobe zram`)")
    for tool in ("mkswap", "swapon", "swapoff"):
        if shutil.which(tool) is None:
            raise HostError(f"{tool} is not installed (util-linux); it is needed to use {ZRAM_DEV} as swap")


def active_swaps() -> list[str]:
    """Devices and files in use as swap (/proc/swaps)."""
    lines = Path("/proc/swaps").read_text().splitlines()[1:]
    return [line.split()[0] for line in lines if line.strip()]


def mm_stat() -> dict[str, int]:
    """/sys/block/zram0/mm_stat: bytes of data stored, compressed, and the pool's memory."""
    fields = ZRAM_SYS.joinpath("mm_stat").read_text().split()
    names = ("orig_data_size", "compr_data_size", "mem_used_total")
    return {name: int(value) for name, value in zip(names, fields)}


def meminfo_mb(field: str) -> int:
    """A /proc/meminfo figure, in MB."""
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) // 1024
    raise KeyError(field)


def disksize_mb() -> int:
    return int(ZRAM_SYS.joinpath("disksize").read_text()) >> 20


def comp_algorithm() -> str:
    """The compressor in use: the bracketed entry of comp_algorithm."""
    text = ZRAM_SYS.joinpath("comp_algorithm").read_text()
    for word in text.split():
        if word.startswith("["):
            return word.strip("[]")
    return text.split()[0]


class ZramSwap:
    """Context manager: /dev/zram0 is swap inside; the machine's previous state comes back after."""

    def __init__(self, disksize_mb: int | None = None, algorithm: str = "lz4") -> None:
        """A device it sets up gets ``disksize_mb`` (default: half the RAM, at least 1 GB)."""
        self.disksize_mb = disksize_mb
        self.algorithm = algorithm
        self._swapped_on = False
        self._sized = False

    def __enter__(self) -> ZramSwap:
        require_host()
        if str(ZRAM_DEV) not in active_swaps():
            self._set_up()
        return self

    def _set_up(self) -> None:
        try:
            if int(ZRAM_SYS.joinpath("disksize").read_text()) == 0:
                available = ZRAM_SYS.joinpath("comp_algorithm").read_text().replace("[", " ").replace("]", " ").split()
                if self.algorithm in available:
                    ZRAM_SYS.joinpath("comp_algorithm").write_text(self.algorithm)
                size = self.disksize_mb or max(1024, meminfo_mb("MemTotal") // 2)
                ZRAM_SYS.joinpath("disksize").write_text(f"{size}M")
                self._sized = True
            _run("mkswap", str(ZRAM_DEV))
            _run("swapon", "-p", "100", str(ZRAM_DEV))
            self._swapped_on = True
        except (OSError, subprocess.CalledProcessError) as exc:
            self._restore()
            raise HostError(f"could not set up {ZRAM_DEV} as swap: {exc}") from None
        except BaseException:  # an interrupt or SIGTERM (exitstorm.lifecycle) between two steps
            self._restore()
            raise

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._restore()

    def _restore(self) -> None:
        """Put back what _set_up changed; a second Ctrl-C or SIGTERM waits until it is done."""
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM, signal.SIGHUP})
        try:
            if self._swapped_on:
                subprocess.run(["swapoff", str(ZRAM_DEV)], check=False, capture_output=True)
                self._swapped_on = False
            if self._sized:
                ZRAM_SYS.joinpath("reset").write_text("1")
                self._sized = False
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)


def _run(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True, text=True)
