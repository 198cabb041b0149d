"""PELT in the kernel's integers (kernel/sched/pelt.c), and the scheduler's signals."""

from __future__ import annotations

import pytest

from actors.cpu import pelt
from actors.cpu.work import Compute, Sleep

from tests.conftest import Bench

PERIOD = pelt.PELT_PERIOD_NS


def running(periods: int, capacity: int = 1024) -> pelt.SchedAvg:
    """A signal that ran ``periods`` periods from zero on a core of ``capacity``."""
    signal = pelt.SchedAvg(0)
    signal.update(periods * PERIOD, capacity)
    return signal


def test_one_period_of_running_is_21_as_the_kernel_computes_it() -> None:
    """By hand: decay_load(1024, 1) = 1024 × 0xfa83b2da >> 32 = 1002 and LOAD_AVG_MAX - decay_load(47742, 1)
    - 1024 = 47742 - 46718 - 1024 = 0, so the period contributes 1002; util_sum = 1002 × 1024 = 1026048 over
    the divider 47742 - 1024 = 46718: 21."""
    assert pelt.decay_load(1024, 1) == 1002 and pelt.decay_load(pelt.LOAD_AVG_MAX, 1) == 46718
    signal = running(1)
    assert (signal.util_sum, signal.period_contrib, signal.util_avg) == (1026048, 0, 21)


@pytest.mark.parametrize("periods, kernel, closed_form", [(1, 21, 21.9), (32, 512, 512.0), (100, 906, 906.6),
                                                         (400, 1023, 1024.0)])
def test_running_from_zero_gives_the_kernels_values(periods: int, kernel: int, closed_form: float) -> None:
    """After 1, 32 and 100 periods, util_avg is 21, 512 and 906 in the kernel's integers, within 5% of the
    series' closed form 1024 × (1 - y**n) (within 0.5% from 32 periods on)."""
    util = running(periods).util_avg
    assert util == kernel and util == pytest.approx(closed_form, rel=0.05 if periods < 32 else 0.005)


def test_a_signal_halves_in_32_periods_and_decays_away() -> None:
    signal = running(400)
    full = signal.util_avg
    signal.update(signal.last_update + 32 * PERIOD, 0)
    assert signal.util_avg == pytest.approx(full / 2, abs=1)
    assert pelt.decay_load(10**6, 32 * 64) == 0


def test_running_on_a_little_core_settles_at_its_capacity() -> None:
    assert running(1000, capacity=656).util_avg == pytest.approx(656, abs=2)


def test_updates_in_pieces_and_at_once_agree_and_the_part_period_is_carried() -> None:
    at_once = pelt.SchedAvg(0)
    at_once.update(7 * PERIOD + 512 * 1024, 700)
    pieces = pelt.SchedAvg(0)
    for t in (PERIOD // 3, 3 * PERIOD, 5 * PERIOD + 100 * 1024, 7 * PERIOD + 512 * 1024):
        pieces.update(t, 700)
    assert at_once.period_contrib == pieces.period_contrib == 512
    assert abs(at_once.util_avg - pieces.util_avg) <= 1  # the kernel's rounding, per update


def test_a_probe_leaves_the_signal_as_it_was() -> None:
    signal = running(10)
    before = (signal.last_update, signal.util_sum, signal.period_contrib, signal.util_avg)
    assert signal.util_at(signal.last_update + 40 * PERIOD, 0) < signal.util_avg
    assert (signal.last_update, signal.util_sum, signal.period_contrib, signal.util_avg) == before


async def test_the_scheduler_tracks_a_thread_and_its_cores_utilization() -> None:
    """A thread runs 32 periods on a half-capacity core, then sleeps 32 periods: its signal and the core's
    rise to about half the core's capacity of 512, then halve."""
    b = Bench([0.5], slice_ns=3 * 1_000_000)
    th = b.thread("t")
    b.start(0, th, [Compute(16 * PERIOD), Sleep(32 * PERIOD), Compute(1)])  # 16 periods of work: 32 at 0.5
    at: dict[str, tuple[int, int]] = {}
    b.rt.at(32 * PERIOD, lambda _: at.setdefault("ran", (b.sched.thread_util(th), b.sched.core_util(0))))
    b.rt.at(64 * PERIOD, lambda _: at.setdefault("slept", (b.sched.thread_util(th), b.sched.core_util(0))))
    await b.rt.run()
    ran, slept = at["ran"], at["slept"]
    assert ran[0] == ran[1] and ran[0] == pytest.approx(256, abs=3)
    assert slept[0] == slept[1] and slept[0] == pytest.approx(ran[0] / 2, abs=1)
