"""Victim processes on the real kernel: memory pushed to ZRAM, then a SIGKILL, timed.

A victim is a forked child that maps anonymous memory, fills every 4 KiB page
with ``random_bytes`` random bytes and zeros (so lz4 compresses it about
4096 / random_bytes times), pushes the swapped part to ZRAM with
madvise(MADV_PAGEOUT) and checks ``VmSwap`` before it says it is ready. It
dies with its parent (PR_SET_PDEATHSIG) and is killed by pid on every way
out of :class:`Victims`, so none can outlive the harness.

Timing: kill → reap is SIGKILL until ``waitpid`` returns (the exit has run
``exit_mm`` and ``exit_notify``); kill → returned is until the victim's
memory is back with the page allocator: 90% of its share of the ZRAM pool
(``mem_used_total`` of mm_stat down again, sampled every ``sample_s``) and,
if it had resident pages, its reap (exit_mmap frees them before the exit is
reaped). Nothing cheaper witnesses resident pages: ``MemFree`` lags on
current kernels (freed pages wait on per-CPU lists, tuned up under heavy
freeing, until vmstat drains them seconds later), and /proc/PID loses its
mm at exit_mm, before the teardown.
"""

from __future__ import annotations

import ctypes
import mmap
import os
import select
import signal
import threading
import time
from pathlib import Path
from types import TracebackType

from attrs import frozen

from exitstorm.zram import PAGE_SIZE, HostError, mm_stat

MADV_PAGEOUT = 21  # include/uapi/asm-generic/mman-common.h (Linux 5.4+)
PR_SET_PDEATHSIG = 1  # include/uapi/linux/prctl.h
MB = 1 << 20
#: share of the victim's ZRAM pool memory that must be back for "memory returned"
RETURNED_SHARE = 0.9


@frozen
class VictimSpec:
    swapped_mb: int
    resident_mb: int = 0
    #: random bytes in each 4 KiB page (the rest are zeros): the content's compressibility
    random_bytes: int = 1024


@frozen
class ExitTiming:
    """One victim's kill, measured."""

    swapped_mb: int
    resident_mb: int
    vm_swap_kb: int
    #: its share of the ZRAM pool (KiB) when it was killed
    pool_kb: int
    pageout_ns: int
    kill_to_reap_ns: int
    kill_to_returned_ns: int | None


def _status_kb(pid: int | str, field: str) -> int | None:
    """A ``Vm*`` figure of /proc/PID/status, None once the process has no mm (or is gone)."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    for line in text.splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return None


def _anonymous(size: int) -> mmap.mmap:
    """Private anonymous memory (mmap's default for fd -1 is shared, i.e. shmem)."""
    return mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)


def _fill(buf: mmap.mmap, random_bytes: int) -> None:
    """Every page: ``random_bytes`` fresh random bytes, then zeros (no two pages alike)."""
    zeros = bytes(PAGE_SIZE - random_bytes)
    pages = MB // PAGE_SIZE
    for off in range(0, len(buf), MB):
        rnd = os.urandom(random_bytes * pages)
        buf[off:off + MB] = b"".join(rnd[i * random_bytes:(i + 1) * random_bytes] + zeros for i in range(pages))


def _child(spec: VictimSpec, parent: int, ready_fd: int) -> None:
    """The victim's life: die with the parent, fill, page out, report, wait for the kill."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:
        return
    swapped = _anonymous(spec.swapped_mb * MB) if spec.swapped_mb else None
    resident = _anonymous(spec.resident_mb * MB) if spec.resident_mb else None
    for buf in (swapped, resident):
        if buf is not None:
            _fill(buf, spec.random_bytes)
    pageout_ns = 0
    if swapped is not None:
        want = spec.swapped_mb * 1024 * 95 // 100
        for _attempt in range(5):
            started = time.monotonic_ns()
            swapped.madvise(MADV_PAGEOUT)
            pageout_ns += time.monotonic_ns() - started
            if (_status_kb("self", "VmSwap") or 0) >= want:
                break
    os.write(ready_fd, f"{pageout_ns}\n".encode())
    while True:
        signal.pause()


class Victims:
    """Spawns victims and guarantees none survives leaving the ``with`` block."""

    def __init__(self, ready_timeout_s: float = 120.0) -> None:
        self.ready_timeout_s = ready_timeout_s
        self._live: set[int] = set()

    def __enter__(self) -> Victims:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        for pid in list(self._live):
            self._reap(pid)

    def _reap(self, pid: int) -> None:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass
        self._live.discard(pid)

    def spawn(self, spec: VictimSpec) -> tuple[int, int, int, int]:
        """Start a victim and wait until its memory is in place: (pid, pageout ns, VmSwap KiB, ZRAM pool KiB)."""
        pool_before = mm_stat()["mem_used_total"]
        read_fd, write_fd = os.pipe()
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:  # the child never returns into the harness
            try:
                os.close(read_fd)
                _child(spec, parent, write_fd)
            finally:
                os._exit(1)
        self._live.add(pid)
        os.close(write_fd)
        try:
            ready, _, _ = select.select([read_fd], [], [], self.ready_timeout_s)
            line = os.read(read_fd, 64).decode().strip() if ready else ""
        finally:
            os.close(read_fd)
        if not line:
            self._reap(pid)
            raise HostError(f"a victim of {spec.swapped_mb} MB swapped + {spec.resident_mb} MB resident "
                            f"did not get ready within {self.ready_timeout_s:.0f} s")
        swap_kb = _status_kb(pid, "VmSwap") or 0
        if swap_kb < spec.swapped_mb * 1024 * 95 // 100:
            self._reap(pid)
            raise HostError(f"MADV_PAGEOUT moved only {swap_kb // 1024} of {spec.swapped_mb} MB to swap "
                            f"(is /dev/zram0 the active swap, and vm.swappiness > 0?)")
        return pid, int(line), swap_kb, max(0, mm_stat()["mem_used_total"] - pool_before) // 1024

    def kill_and_time(self, spec: VictimSpec, sample_s: float = 0.0005, settle_s: float = 5.0) -> ExitTiming:
        """Spawn a victim, SIGKILL it, and time its reap and the return of its memory."""
        pid, pageout_ns, swap_kb, pool_kb = self.spawn(spec)
        pool_target = mm_stat()["mem_used_total"] - RETURNED_SHARE * pool_kb * 1024
        pool_back: list[int] = []
        stop = threading.Event()

        def sample() -> None:
            while not stop.is_set():
                if mm_stat()["mem_used_total"] <= pool_target:
                    pool_back.append(time.monotonic_ns())
                    return
                time.sleep(sample_s)

        sampler = threading.Thread(target=sample, daemon=True)
        killed = time.monotonic_ns()
        sampler.start()
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        reaped = time.monotonic_ns()
        self._live.discard(pid)
        sampler.join(settle_s)
        stop.set()
        sampler.join()
        returned = None
        if pool_back:
            returned = max(pool_back[0], reaped) if spec.resident_mb else pool_back[0]
        return ExitTiming(spec.swapped_mb, spec.resident_mb, swap_kb, pool_kb, pageout_ns,
                          reaped - killed, None if returned is None else returned - killed)
