"""Victim processes on the real kernel: memory pushed to ZRAM, then a SIGKILL, timed.

A victim is a forked child that maps anonymous memory, fills every 4 KiB page
with ``random_bytes`` random bytes and zeros (so lz4 compresses it about
4096 / random_bytes times), pushes the swapped part to ZRAM with
madvise(MADV_PAGEOUT) and checks ``VmSwap`` before it says it is ready. It
dies with its parent (PR_SET_PDEATHSIG, :func:`fork_child`) and is killed by pid on every way
out of :class:`Victims`, so none can outlive the harness.

The harness threads around a storm run at SCHED_FIFO 1, as lmkd's main
thread (which sends its kills and polls their pidfds) does: the one sending
the SIGKILLs back to back, the one waiting for the reaps and the pool
sampler. At a fair nice 0 they are preempted by the victims they have
woken (up to 15 ms between two SIGKILLs on a 2-core VM, and reaps of
victims boosted to nice −20 seen only once all are done), where the
simulator kills them all at one instant and sees every exit when it
happens. Before the kills, the sending thread can set every thread of each
victim to a nice value (setpriority per thread, as lmkd's
set_process_group_and_prio boosts its victims); the nice each victim has at
its kill is read back and kept with the timing.

Timing: kill → reap is SIGKILL until ``waitpid`` returns (the exit has run
``exit_mm`` and ``exit_notify``); kill → returned is until the victim's
memory is back with the page allocator: its share of the ZRAM pool, as
:class:`PoolSampling` says (``mem_used_total`` of mm_stat down again) and,
if it had resident pages, its reap (exit_mmap frees them before the exit is
reaped). Nothing cheaper witnesses resident pages: ``MemFree`` lags on
current kernels (freed pages wait on per-CPU lists, tuned up under heavy
freeing, until vmstat drains them seconds later), and /proc/PID loses its
mm at exit_mm, before the teardown.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import gc
import mmap
import os
import select
import signal
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Callable, Iterator

from attrs import field, frozen

from actors.kernel.memory import PAGES_PER_MB
from exitstorm.lifecycle import die_with_parent, held_signals, release_signals
from exitstorm.realkernel.zram import PAGE_SIZE, ZRAM0, HostError
from exitstorm.schema import ConfigError

MADV_PAGEOUT = 21  # include/uapi/asm-generic/mman-common.h (Linux 5.4+)
SYS_PROCESS_MRELEASE = 448  # arch/x86/entry/syscalls/syscall_64.tbl (Linux 5.15+)
MB = PAGE_SIZE * PAGES_PER_MB
#: percent of a victim's swapped memory that VmSwap must show before it counts as paged out
PAGEOUT_PERCENT = 95
#: the SCHED_FIFO priority of the harness threads around a storm (lmkd's main thread runs at it)
HARNESS_PRIO = 1


#: 1 KiB random + 3 KiB zeros per page: lz4 compresses it about 3.9 times (docs/design.md §10)
DEFAULT_RANDOM_BYTES = 1024


def check_random_bytes(random_bytes: int) -> None:
    if not 1 <= random_bytes <= PAGE_SIZE:
        raise ConfigError(f"--random-bytes: expected random bytes per 4 KiB page, 1..{PAGE_SIZE}, got {random_bytes}")


@frozen
class VictimSpec:
    swapped_mb: int
    resident_mb: int = 0
    #: random bytes in each 4 KiB page (the rest are zeros): the content's compressibility
    random_bytes: int = DEFAULT_RANDOM_BYTES


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


@frozen
class Storm:
    """Victims spawned together, ready to be killed together."""

    spec: VictimSpec
    pids: list[int]
    #: their share of the ZRAM pool (mm_stat mem_used_total), bytes
    pool_bytes: int
    #: orig_data_size / compr_data_size of what they put in ZRAM
    compression_ratio: float


@frozen
class StormTiming:
    """Victims SIGKILLed together, measured."""

    count: int
    swapped_mb: int
    mrelease: bool
    pool_kb: int
    compression_ratio: float
    #: per victim, in kill order: its SIGKILL → its reap (pidfd readable: exit_notify has run)
    exit_ns: list[int]
    #: the first SIGKILL → 90% of the storm's ZRAM pool share back
    returned_ns: int | None
    #: per victim, what the reaper's process_mrelease returned ("ok" or an errno name); empty without reaper
    mrelease_results: list[str]
    resident_mb: int = 0
    #: per victim, in kill order: the highest nice of its threads just before the kills
    victim_nice: list[int] = field(factory=list)
    #: per victim, in kill order: CLOCK_MONOTONIC ns its SIGKILL was sent at (the clock of the preview's frames)
    kill_at_ns: list[int] = field(factory=list)
    #: the pool sampler's reads of mm_stat and its thread CPU per read (None without ZRAM memory to watch)
    pool_reads: int | None = None
    pool_read_cpu_ns: int | None = None


@frozen
class PoolSampling:
    """How the harness watches memory come back: mm_stat every ``interval_s`` of sleep until
    ``returned_share`` of the victims' ZRAM pool is back (the storm scenario's ``[storm.pool_poller]``, so that
    both sides sample alike)."""

    interval_s: float
    returned_share: float


@contextlib.contextmanager
def paused_gc() -> Iterator[None]:
    """No garbage collection inside (a block or, as ``@paused_gc()``, a method): a collection of the harness's
    heap would stall it between SIGKILLs or between the preview's start and the kills."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


@contextlib.contextmanager
def _fifo(prio: int) -> Iterator[None]:
    """The calling thread at SCHED_FIFO ``prio`` inside; its scheduling and nice as they were after."""
    tid = threading.get_native_id()
    policy, param, nice = os.sched_getscheduler(tid), os.sched_getparam(tid), os.getpriority(os.PRIO_PROCESS, tid)
    os.sched_setscheduler(tid, os.SCHED_FIFO, os.sched_param(prio))
    try:
        yield
    finally:
        os.sched_setscheduler(tid, policy, param)
        os.setpriority(os.PRIO_PROCESS, tid, nice)


class _PoolWatch:
    """A thread sampling mm_stat (at SCHED_FIFO: busy victims never delay what it sees) until ``mem_used_total``
    falls to ``target`` bytes. It counts its reads and the CPU they take, so that the simulator can run the
    same thread (``storm.pool_poller``)."""

    def __init__(self, target: float, sample_s: float) -> None:
        self.target = target
        self.sample_s = sample_s
        self._back: list[int] = []
        self.reads = 0
        self.cpu_ns = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        with _fifo(HARNESS_PRIO):
            began = time.thread_time_ns()
            try:
                while not self._stop.is_set():
                    self.reads += 1
                    if ZRAM0.mm_stat()["mem_used_total"] <= self.target:
                        self._back.append(time.monotonic_ns())
                        return
                    time.sleep(self.sample_s)
            finally:
                self.cpu_ns = time.thread_time_ns() - began

    def start(self) -> None:
        self._thread.start()

    def stop(self, settle_s: float) -> int | None:
        """Wait up to ``settle_s`` for the target; the monotonic ns it was seen at, or None."""
        self._thread.join(settle_s)
        self._stop.set()
        self._thread.join()
        return self._back[0] if self._back else None

    @property
    def cpu_per_read_ns(self) -> int | None:
        return self.cpu_ns // self.reads if self.reads else None


def _tasks(pid: int) -> list[int]:
    return [int(tid) for tid in os.listdir(f"/proc/{pid}/task")]


def set_nice(pid: int, nice: int) -> None:
    """Every thread of ``pid`` to ``nice`` (setpriority(PRIO_PROCESS, tid) is one thread's nice on Linux)."""
    for tid in _tasks(pid):
        os.setpriority(os.PRIO_PROCESS, tid, nice)


def process_nice(pid: int) -> int:
    """The highest nice among ``pid``'s threads: how little its least boosted thread is boosted."""
    return max(os.getpriority(os.PRIO_PROCESS, tid) for tid in _tasks(pid))


@frozen
class _Kills:
    """What the thread sending a storm's SIGKILLs does, and what it notes."""

    pids: list[int]
    pidfds: list[int]
    #: every victim's threads set to this nice before the kills; None: left as they are
    victim_nice: int | None
    nice: list[int] = field(factory=list)
    kill_ns: list[int] = field(factory=list)

    def send_all(self) -> None:
        """Set (and read back) the victims' nice, then pidfd_send_signal(SIGKILL) to each, back to back."""
        try:
            if self.victim_nice is not None:
                for pid in self.pids:
                    set_nice(pid, self.victim_nice)
            self.nice.extend(process_nice(pid) for pid in self.pids)
            for fd in self.pidfds:
                self.kill_ns.append(time.monotonic_ns())
                signal.pidfd_send_signal(fd, signal.SIGKILL)
        except OSError as exc:
            wanted = "" if self.victim_nice is None else f" (the victims to nice {self.victim_nice})"
            raise HostError(f"could not kill the storm{wanted}: {exc}") from None


def _reaper(kills: _Kills, sent: threading.Event, failed: list[Exception], results: list[str], nice: int) -> None:
    """An lmkd-like reaper thread, fair at ``nice``: the SIGKILLs (at SCHED_FIFO), then process_mrelease(pidfd, 0)
    on each victim."""
    libc = ctypes.CDLL(None, use_errno=True)
    tid = threading.get_native_id()
    try:
        os.sched_setscheduler(tid, os.SCHED_OTHER, os.sched_param(0))
        os.setpriority(os.PRIO_PROCESS, tid, nice)
        with _fifo(HARNESS_PRIO):
            kills.send_all()
    except (OSError, HostError) as exc:
        failed.append(exc)
        return
    finally:
        sent.set()
    for fd in kills.pidfds:
        ok = libc.syscall(SYS_PROCESS_MRELEASE, fd, 0) == 0
        results.append("ok" if ok else errno.errorcode.get(ctypes.get_errno(), str(ctypes.get_errno())))


def _wait_exits(pidfds: list[int], timeout_s: float) -> list[int]:
    """Monotonic ns at which each pidfd became readable (its process exited), in pidfd order."""
    poll = select.poll()
    for fd in pidfds:
        poll.register(fd, select.POLLIN)
    seen: dict[int, int] = {}
    deadline = time.monotonic() + timeout_s
    while len(seen) < len(pidfds):
        left_ms = (deadline - time.monotonic()) * 1000
        if left_ms <= 0:
            raise HostError(f"{len(pidfds) - len(seen)} killed victims had not exited after {timeout_s:.0f} s")
        events = poll.poll(left_ms)
        now = time.monotonic_ns()
        for fd, _mask in events:
            seen[fd] = now
            poll.unregister(fd)
    return [seen[fd] for fd in pidfds]


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
    for off in range(0, len(buf), MB):
        rnd = os.urandom(random_bytes * PAGES_PER_MB)
        buf[off:off + MB] = b"".join(rnd[i * random_bytes:(i + 1) * random_bytes] + zeros
                                     for i in range(PAGES_PER_MB))


def fork_child(life: Callable[[int], None]) -> tuple[int, int]:
    """Fork a child that dies with this process (PR_SET_PDEATHSIG), runs ``life(write_fd)`` and exits:
    (its pid, the read end of its pipe). The child never returns into the harness.

    Call it inside :func:`~exitstorm.lifecycle.held_signals`, and record the pid there too, so that no
    interrupt is lost in the fork's callbacks and none can come between the fork and the record."""
    read_fd, write_fd = os.pipe()
    parent = os.getpid()
    pid = os.fork()
    if pid == 0:
        try:
            release_signals()
            os.close(read_fd)
            if die_with_parent(parent):
                life(write_fd)
        finally:
            os._exit(0)
    os.close(write_fd)
    return pid, read_fd


def kill_and_wait(pid: int) -> None:
    """SIGKILL a child of ours, if it is still there, and reap it."""
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass


def _paged_out_kb(spec: VictimSpec) -> int:
    """The VmSwap (KiB) at which ``spec``'s swapped memory counts as paged out."""
    return spec.swapped_mb * 1024 * PAGEOUT_PERCENT // 100


def _child(spec: VictimSpec, ready_fd: int) -> None:
    """The victim's life: fill, page out, report, wait for the kill."""
    swapped = _anonymous(spec.swapped_mb * MB) if spec.swapped_mb else None
    resident = _anonymous(spec.resident_mb * MB) if spec.resident_mb else None
    for buf in (swapped, resident):
        if buf is not None:
            _fill(buf, spec.random_bytes)
    pageout_ns = 0
    if swapped is not None:
        want = _paged_out_kb(spec)
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
        kill_and_wait(pid)
        self._live.discard(pid)

    def _start(self, spec: VictimSpec) -> tuple[int, int]:
        """Fork a victim: (pid, the read end of its ready pipe)."""
        with held_signals():
            pid, read_fd = fork_child(lambda ready_fd: _child(spec, ready_fd))
            self._live.add(pid)
        return pid, read_fd

    def _ready(self, spec: VictimSpec, pid: int, read_fd: int, deadline: float) -> tuple[int, int]:
        """Wait for a started victim: (pageout ns, VmSwap KiB), or a HostError."""
        try:
            ready, _, _ = select.select([read_fd], [], [], max(0.0, deadline - time.monotonic()))
            line = os.read(read_fd, 64).decode().strip() if ready else ""
        finally:
            os.close(read_fd)
        if not line:
            self._reap(pid)
            raise HostError(f"a victim of {spec.swapped_mb} MB swapped + {spec.resident_mb} MB resident "
                            f"did not get ready within {self.ready_timeout_s:.0f} s")
        swap_kb = _status_kb(pid, "VmSwap") or 0
        if swap_kb < _paged_out_kb(spec):
            self._reap(pid)
            raise HostError(f"MADV_PAGEOUT moved only {swap_kb // 1024} of {spec.swapped_mb} MB to swap "
                            f"(is /dev/zram0 the active swap, and vm.swappiness > 0?)")
        return int(line), swap_kb

    def spawn(self, spec: VictimSpec) -> tuple[int, int, int, int]:
        """Start a victim and wait until its memory is in place: (pid, pageout ns, VmSwap KiB, ZRAM pool KiB)."""
        pool_before = ZRAM0.mm_stat()["mem_used_total"]
        pid, read_fd = self._start(spec)
        pageout_ns, swap_kb = self._ready(spec, pid, read_fd, time.monotonic() + self.ready_timeout_s)
        return pid, pageout_ns, swap_kb, max(0, ZRAM0.mm_stat()["mem_used_total"] - pool_before) // 1024

    def spawn_storm(self, spec: VictimSpec, count: int) -> Storm:
        """``count`` victims of ``spec``, filled in parallel, all with their memory in place."""
        before = ZRAM0.mm_stat()
        started = [self._start(spec) for _ in range(count)]
        deadline = time.monotonic() + self.ready_timeout_s
        for pid, read_fd in started:
            self._ready(spec, pid, read_fd, deadline)
        after = ZRAM0.mm_stat()
        orig = after["orig_data_size"] - before["orig_data_size"]
        compr = after["compr_data_size"] - before["compr_data_size"]
        return Storm(spec, [pid for pid, _ in started], max(0, after["mem_used_total"] - before["mem_used_total"]),
                     orig / compr if orig > 0 and compr > 0 else 1.0)

    @paused_gc()
    def kill_storm(self, storm: Storm, reaper_nice: int | None, victim_nice: int | None, sampling: PoolSampling,
                   settle_s: float = 10.0) -> StormTiming:
        """SIGKILL the storm's victims back to back (at SCHED_FIFO) and time every reap.

        With a ``reaper_nice``, an lmkd-like reaper thread at that nice value
        sends the SIGKILLs and then calls process_mrelease on each victim in
        kill order, as lmkd's reaper does after its kill; with None, the
        harness's main thread sends them. The thread sending them first sets
        every victim thread to ``victim_nice`` (unless None). The pool sampler
        reads mm_stat as ``sampling`` says; a storm without swapped memory has
        nothing in ZRAM to see returned, and runs none.
        """
        pidfds = [os.pidfd_open(pid) for pid in storm.pids]
        try:
            kills = _Kills(storm.pids, pidfds, victim_nice)
            target = ZRAM0.mm_stat()["mem_used_total"] - sampling.returned_share * storm.pool_bytes
            results: list[str] = []
            reaper = None
            with _fifo(HARNESS_PRIO):
                if reaper_nice is None:
                    kills.send_all()
                else:
                    sent = threading.Event()
                    failed: list[Exception] = []
                    reaper = threading.Thread(target=_reaper, args=(kills, sent, failed, results, reaper_nice),
                                              daemon=True)
                    reaper.start()
                    sent.wait()
                    if failed:
                        raise HostError(f"the reaper thread (nice {reaper_nice}) could not kill the storm: "
                                        f"{failed[0]}")
                # started after the kills, so that it never holds the GIL the thread sending them wants
                watch = _PoolWatch(target, sampling.interval_s) if storm.spec.swapped_mb else None
                if watch is not None:
                    watch.start()
                reap_ns = _wait_exits(pidfds, settle_s)
                for pid in storm.pids:
                    os.waitpid(pid, 0)
                    self._live.discard(pid)
                if reaper is not None:
                    reaper.join()
                returned = None if watch is None else watch.stop(settle_s)
        finally:
            for fd in pidfds:
                os.close(fd)
        return StormTiming(
            count=len(storm.pids), swapped_mb=storm.spec.swapped_mb, mrelease=reaper_nice is not None,
            pool_kb=storm.pool_bytes // 1024, compression_ratio=round(storm.compression_ratio, 3),
            exit_ns=[r - k for k, r in zip(kills.kill_ns, reap_ns)],
            returned_ns=None if returned is None else returned - kills.kill_ns[0], mrelease_results=results,
            resident_mb=storm.spec.resident_mb, victim_nice=kills.nice, kill_at_ns=kills.kill_ns,
            pool_reads=None if watch is None else watch.reads,
            pool_read_cpu_ns=None if watch is None else watch.cpu_per_read_ns)

    @paused_gc()
    def kill_and_time(self, spec: VictimSpec, sampling: PoolSampling, settle_s: float = 5.0) -> ExitTiming:
        """Spawn a victim, SIGKILL it, and time its reap and the return of its memory (sampled as ``sampling``
        says)."""
        pid, pageout_ns, swap_kb, pool_kb = self.spawn(spec)
        watch = _PoolWatch(ZRAM0.mm_stat()["mem_used_total"] - sampling.returned_share * pool_kb * 1024,
                           sampling.interval_s)
        watch.start()
        killed = time.monotonic_ns()
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        reaped = time.monotonic_ns()
        self._live.discard(pid)
        back = watch.stop(settle_s)
        returned = None
        if back is not None:
            returned = max(back, reaped) if spec.resident_mb else back
        return ExitTiming(spec.swapped_mb, spec.resident_mb, swap_kb, pool_kb, pageout_ns,
                          reaped - killed, None if returned is None else returned - killed)
