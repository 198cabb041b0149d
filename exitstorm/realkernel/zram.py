"""ZRAM swap on the real machine: found or set up for a measurement, then put back as it was, whatever ends it.

``exitstorm calibrate`` and ``exitstorm validate`` need swap on ``/dev/zram0``
(Documentation/admin-guide/blockdev/zram.rst). If it is not already swap,
:class:`ZramSwap` picks a compressor, sizes the device, runs mkswap and
swapon, and afterwards undoes exactly what it did. It is a small state
machine with a journal:

- one measurement at a time holds the device (a lock naming its pid);
- the host's state (disksize, compressor) is written to the journal before
  the first change, and each change is appended before it is made;
- Ctrl-C, SIGTERM and SIGHUP are held off while the host is changed or put
  back, so a signal (a second one too) lands before or after the change,
  never inside it; the interrupt is raised once it is done, and the way out
  puts everything back;
- a run killed outright (SIGKILL, a crash) leaves its journal: the next start
  says what it left and undoes it before measuring.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import TracebackType
from typing import Any, Callable

from exitstorm.lifecycle import held_signals
from exitstorm.outputs.pidlock import Held, pid_lock

PAGE_SIZE = 4096
#: where a measurement keeps its journal and lock: a tmpfs that a reboot clears, as it clears ZRAM
JOURNAL_DIR = Path("/run/exitstorm")
#: the signals that end a command (exitstorm.lifecycle) and are held off while the host changes
class HostError(Exception):
    """The machine cannot run a real-kernel measurement: one line saying what is missing."""


def meminfo_mb(field: str) -> int:
    """A /proc/meminfo figure, in MB."""
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) // 1024
    raise KeyError(field)


class ZramDevice:
    """The ZRAM device and its swap, as the harness reads and changes them (a test replaces the host side)."""

    def __init__(self, dev: Path = Path("/dev/zram0"), sysfs: Path = Path("/sys/block/zram0"),
                 proc_swaps: Path = Path("/proc/swaps")) -> None:
        self.dev = dev
        self.sysfs = sysfs
        self.proc_swaps = proc_swaps

    def require(self) -> None:
        """Linux, root, the device and the swap tools, or a HostError naming the first thing missing."""
        if not sys.platform.startswith("linux"):
            raise HostError(f"real-kernel measurements need Linux (this is {sys.platform})")
        if os.geteuid() != 0:
            raise HostError("real-kernel measurements need root (to set up ZRAM swap and reap processes); "
                            "run as root")
        if not self.dev.exists() or not self.sysfs.exists():
            raise HostError(f"no ZRAM device: {self.dev} is missing (load it with `modprobe zram`)")
        for tool in ("mkswap", "swapon", "swapoff"):
            if shutil.which(tool) is None:
                raise HostError(f"{tool} is not installed (util-linux); it is needed to use {self.dev} as swap")

    def is_swap(self) -> bool:
        lines = self.proc_swaps.read_text().splitlines()[1:]
        return str(self.dev) in (line.split()[0] for line in lines if line.strip())

    def disksize(self) -> int:
        """Bytes; 0 while the device is unset."""
        return int(self.sysfs.joinpath("disksize").read_text())

    def algorithms(self) -> list[str]:
        return self.sysfs.joinpath("comp_algorithm").read_text().replace("[", " ").replace("]", " ").split()

    def comp_algorithm(self) -> str:
        """The compressor in use: the bracketed entry of comp_algorithm."""
        text = self.sysfs.joinpath("comp_algorithm").read_text()
        for word in text.split():
            if word.startswith("["):
                return word.strip("[]")
        return text.split()[0]

    def mm_stat(self) -> dict[str, int]:
        """mm_stat: bytes of data stored, compressed, and the pool's memory."""
        fields = self.sysfs.joinpath("mm_stat").read_text().split()
        names = ("orig_data_size", "compr_data_size", "mem_used_total")
        return {name: int(value) for name, value in zip(names, fields)}

    def set_comp_algorithm(self, name: str) -> None:
        self.sysfs.joinpath("comp_algorithm").write_text(name)

    def set_disksize(self, size_bytes: int) -> None:
        self.sysfs.joinpath("disksize").write_text(str(size_bytes))

    def reset(self) -> None:
        self.sysfs.joinpath("reset").write_text("1")

    def mkswap(self) -> None:
        _run("mkswap", str(self.dev))

    def swapon(self) -> None:
        _run("swapon", "-p", "100", str(self.dev))

    def swapoff(self) -> None:
        _run("swapoff", str(self.dev))


def _run(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True, text=True)


def _note(text: str) -> None:
    print(f"exitstorm: {text}", file=sys.stderr)


class ZramSwap:
    """Context manager: the device is swap inside; the machine's previous state comes back after."""

    def __init__(self, disksize_mb: int | None = None, algorithm: str = "lz4", device: ZramDevice | None = None,
                 journal_dir: Path = JOURNAL_DIR, note: Callable[[str], None] = _note) -> None:
        """A device it sets up gets ``disksize_mb`` (default: half the RAM, at least 1 GB). ``note`` hears
        what a killed run left and what was done about it."""
        self.disksize_mb = disksize_mb
        self.algorithm = algorithm
        self.device = device or ZRAM0
        self.journal = journal_dir / f"{self.device.dev.name}.json"
        self.lock = journal_dir / f"{self.device.dev.name}.lock"
        self.note = note
        self._held = contextlib.ExitStack()

    def __enter__(self) -> ZramSwap:
        self.device.require()
        self.journal.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._held.enter_context(pid_lock(self.lock))
        except Held as other:
            raise HostError(f"another exitstorm measurement (pid {other.holder}) is using {self.device.dev}") \
                from None
        try:
            with held_signals():
                self._undo_leftovers()
                if not self.device.is_swap():
                    self._set_up()
        except BaseException:
            self._close()
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._close()

    def _close(self) -> None:
        """Put the host back and let the device go; a HostError if it could not be put back."""
        try:
            with held_signals():
                self._undo()
        finally:
            self._held.close()

    def _undo_leftovers(self) -> None:
        if not self.journal.exists():
            return
        entry = self._read_journal()
        done = ", ".join(entry["changes"]) or "nothing yet"
        self.note(f"a measurement that was killed (pid {entry.get('pid', 'unknown')}) left {self.device.dev} changed "
                  f"({done}); putting it back as it was before that run")
        self._undo()

    def _read_journal(self) -> dict[str, Any]:
        try:
            entry = json.loads(self.journal.read_text())
            if not (isinstance(entry.get("before"), dict) and isinstance(entry.get("changes"), list)):
                raise ValueError("no 'before' or 'changes'")
        except (OSError, ValueError, AttributeError) as exc:
            raise HostError(f"{self.journal}: unreadable journal of an earlier measurement ({exc}); check "
                            f"{self.device.dev} and swap by hand, then remove it") from None
        return entry

    def _record(self, entry: dict[str, Any]) -> None:
        """Write the journal whole and durable before the change it announces is made."""
        tmp = self.journal.with_suffix(".tmp")
        with open(tmp, "w") as f:
            json.dump(entry, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.journal)

    def _set_up(self) -> None:
        """Size the device if unset, make it swap, turn it on: each step journaled before it is taken."""
        dev = self.device
        size = dev.disksize()
        if size:
            raise HostError(f"{dev.dev} is set up ({size >> 20} MB) but is not swap: it may hold data, and "
                            f"exitstorm will not overwrite it; make it swap, or reset it "
                            f"(echo 1 > {dev.sysfs / 'reset'}) if it is free")
        entry: dict[str, Any] = {"pid": os.getpid(), "device": str(dev.dev),
                                 "before": {"disksize": size, "comp_algorithm": dev.comp_algorithm()},
                                 "changes": []}

        def change(step: str, action: Callable[[], None]) -> None:
            entry["changes"].append(step)
            self._record(entry)
            action()

        try:
            if self.algorithm in dev.algorithms() and self.algorithm != dev.comp_algorithm():
                change("comp_algorithm", lambda: dev.set_comp_algorithm(self.algorithm))
            size_mb = self.disksize_mb or max(1024, meminfo_mb("MemTotal") // 2)
            change("disksize", lambda: dev.set_disksize(size_mb << 20))
            change("mkswap", dev.mkswap)
            change("swapon", dev.swapon)
        except (OSError, subprocess.CalledProcessError) as exc:
            raise HostError(f"could not set up {dev.dev} as swap: {_why(exc)}") from None

    def _undo(self) -> None:
        """Undo what the journal says was changed, as far as the device still shows it (so undoing twice,
        or after a step that never happened, changes nothing), then drop the journal."""
        if not self.journal.exists():
            return
        entry = self._read_journal()
        changes, before, dev = entry["changes"], entry["before"], self.device
        try:
            if "swapon" in changes and dev.is_swap():
                dev.swapoff()
            if "disksize" in changes and dev.disksize() != before["disksize"]:
                dev.reset()
            if "comp_algorithm" in changes and dev.comp_algorithm() != before["comp_algorithm"]:
                dev.set_comp_algorithm(before["comp_algorithm"])
        except (OSError, subprocess.CalledProcessError) as exc:
            raise HostError(f"could not put {dev.dev} back ({_why(exc)}); {self.journal} says what was changed, "
                            f"and the next measurement will try again") from None
        self.journal.unlink()


def _why(exc: OSError | subprocess.CalledProcessError) -> str:
    if isinstance(exc, subprocess.CalledProcessError):
        return f"{exc.cmd[0]} failed: {(exc.stderr or '').strip() or f'status {exc.returncode}'}"
    return str(exc)


#: the device the harness measures with
ZRAM0 = ZramDevice()


def require_host() -> None:
    """This machine can run the real-kernel harness on /dev/zram0, or a HostError saying why not."""
    ZRAM0.require()
