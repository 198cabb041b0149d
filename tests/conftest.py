"""Shared helpers: a small world of one scheduler whose programs are started at given times."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any, Iterable

import pytest

from actors.cpu.scheduler import CoreSpec, SchedTunables, Scheduler, Thread
from actors.cpu.work import Step
from actors.device import build_device
from actors.kernel.memory import MM, mb_to_pages
from actors.kernel.process import Process
from actors.kernel.profiles import DeviceCosts
from actors.runtime.actor import Runtime
from exitstorm.lab.config import KernelConfig
from exitstorm.realkernel.zram import ZRAM0, HostError, require_host
from exitstorm.schema import structure

MS = 1_000_000
ROOT = Path(__file__).resolve().parent.parent
PROFILE = structure(tomllib.loads((ROOT / "configs/kernels/swap_table.toml").read_text()), KernelConfig,
                    "swap_table.toml").profile
COSTS = DeviceCosts(swap_entry_free_ns=400, present_page_free_ns=150, file_page_unmap_ns=40,
                    exit_fixed_ns=500_000, compress_page_ns=3_000, cacheline_transfer_ns=60, alloc_page_ns=0)
FAIR = {"policy": "fair", "nice": 0, "thread_class": "t"}


def exitstorm(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    """Run the ``exitstorm`` command in a separate process, as a user would."""
    return subprocess.run([sys.executable, "-m", "exitstorm", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=300)


def dir_bytes(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` by its relative path: two results directories compare as two dicts."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _host_problem() -> str | None:
    try:
        require_host()
    except HostError as exc:
        return str(exc)
    return None


#: why this machine cannot run the real-kernel harness (root, Linux, ZRAM), or None when it can
HOST_PROBLEM = _host_problem()


def zram_state() -> tuple[bool, int, str]:
    """/dev/zram0 as the harness must leave it: swap or not, its disksize, its compressor."""
    return ZRAM0.is_swap(), ZRAM0.disksize(), ZRAM0.comp_algorithm()


class Bench:
    """A runtime with one scheduler; ``start(t, thread, steps)`` schedules a submission."""

    def __init__(self, capacities: Iterable[float], *, slice_ns: int, run_to_parity: bool = True,
                 wakeup_preemption: bool = True, end_ns: int | None = None, preempt: str = "full",
                 tick_ns: int = 0, balance_ns_per_cpu: int = 0, busy_factor: int = 1,
                 energy_aware: bool = False, idle_states: tuple[tuple[int, int], ...] = ()) -> None:
        """Cores of equal capacity next to each other form a cluster; every core has ``idle_states``."""
        self.rt = Runtime(seed=1, end_ns=end_ns)
        tun = SchedTunables(base_slice_ns=slice_ns, tunable_scaling="none", run_to_parity=run_to_parity,
                            wakeup_preemption=wakeup_preemption, preempt=preempt, tick_ns=tick_ns,
                            balance_ns_per_cpu=balance_ns_per_cpu, busy_factor=busy_factor,
                            energy_aware=energy_aware)
        self.delays: list[tuple[str, int]] = []
        caps = list(capacities)
        clusters = [sum(1 for a, b in zip(caps, caps[1:i + 1]) if a != b) for i in range(len(caps))]
        self.sched = self.rt.add(Scheduler("cpu", [CoreSpec(c, cl, idle_states) for c, cl in zip(caps, clusters)], tun))
        self.sched.delayed.connect(lambda th, d: self.delays.append((th.name, d)))
        self.done: dict[str, Any] = {}

    def thread(self, name: str, policy: str = "fair", **kw: Any) -> Thread:
        return self.sched.spawn(name, None, policy, **kw)

    def start(self, t_ns: int, th: Thread, steps: Iterable[Step]) -> None:
        def submit(_: Any) -> None:
            self.sched.submit(th, list(steps), lambda r: self.done.__setitem__(th.name, r))
        self.rt.at(t_ns, submit)

    def at(self, t_ns: int, fn: Any) -> None:
        self.rt.at(t_ns, lambda _: fn())

    async def run(self) -> None:
        await self.rt.run()


class KernelWorld:
    """A runtime and a device (exitstorm's own assembly) of equal cores, memory, the swap_table kernel and,
    unless ``kswapd=False``, kswapd."""

    def __init__(self, total_mb: float = 1024, kernel_mb: float = 64, cores: int = 2,
                 costs: DeviceCosts = COSTS, end_ns: int | None = None, kswapd: bool = True) -> None:
        self.rt = Runtime(seed=1, end_ns=end_ns)
        device = build_device(self.rt, [CoreSpec(1.0)] * cores, SchedTunables(700_000, "log", True, True),
                              total_pages=mb_to_pages(total_mb), kernel_pages=mb_to_pages(kernel_mb),
                              watermark_scale_factor=10, zram_pages=mb_to_pages(4096), profile=PROFILE, costs=costs,
                              kswapd_thread=FAIR if kswapd else None, scheduler_name="cpu")
        self.sched, self.mem, self.kernel, self.kswapd = device.scheduler, device.memory, device.kernel, device.kswapd

    def process(self, pid: int, anon: int = 0, file: int = 0, swap: int = 0, adj: int = 0,
                thread_kw: dict[str, Any] = FAIR, **kw: Any) -> Process:
        mm = MM(pid, f"p{pid}", 3.0, adj)
        self.kernel.add_mm(mm, anon=anon, file=file, swap=swap)
        return self.rt.add(Process(f"p{pid}", self.kernel, mm, thread_kw, **kw))


@pytest.fixture
def bench_factory():
    return Bench
