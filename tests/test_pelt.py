"""PELT's closed form against the kernel's series (kernel/sched/pelt.c), and the scheduler's signals."""

from __future__ import annotations

import math

import pytest

from actors.cpu import pelt
from actors.cpu.work import Compute, Sleep

from tests.conftest import Bench

PERIOD = pelt.PELT_PERIOD_NS
Y = 0.5 ** (1 / 32)


def kernel_series(periods: int, capacity: int = 1024) -> float:
    """util_avg after ``periods`` whole periods of running from 0: sum of y**k over the periods, as
    ___update_load_sum() accrues it, over the series' limit 1 / (1 - y) (LOAD_AVG_MAX / 1024)."""
    return capacity * sum(Y ** k for k in range(periods)) * (1 - Y)


@pytest.mark.parametrize("periods, expected", [(1, 21.9), (32, 512.0), (100, 906.6)])
def test_running_from_zero_gives_the_kernels_values(periods: int, expected: float) -> None:
    got = pelt.advance(0.0, periods * PERIOD, 1024)
    assert got == pytest.approx(expected, abs=0.1)
    assert got == pytest.approx(kernel_series(periods), rel=1e-9)


def test_a_signal_halves_in_32_periods_and_running_on_a_little_core_settles_at_its_capacity() -> None:
    assert pelt.advance(800.0, 32 * PERIOD, 0) == pytest.approx(400.0)
    assert pelt.advance(800.0, 64 * PERIOD, 0) == pytest.approx(200.0)
    assert pelt.advance(0.0, 2000 * PERIOD, 400) == pytest.approx(400.0)
    assert pelt.advance(123.0, 0, 1024) == 123.0


def test_accrual_in_pieces_equals_accrual_at_once() -> None:
    whole = pelt.advance(50.0, 7 * PERIOD + 12345, 700)
    pieces = pelt.advance(pelt.advance(50.0, 3 * PERIOD, 700), 4 * PERIOD + 12345, 700)
    assert math.isclose(whole, pieces, rel_tol=1e-12)


async def test_the_scheduler_tracks_a_thread_and_its_cores_utilization() -> None:
    """A thread runs 32 periods on a half-capacity core, then sleeps 32 periods: its signal and the core's
    rise to half the core's capacity of 512, then halve."""
    b = Bench([0.5], slice_ns=3 * 1_000_000)
    th = b.thread("t")
    b.start(0, th, [Compute(16 * PERIOD), Sleep(32 * PERIOD), Compute(1)])  # 16 periods of work: 32 at 0.5
    at: dict[str, tuple[float, float]] = {}
    b.rt.at(32 * PERIOD, lambda _: at.setdefault("ran", (b.sched.thread_util(th), b.sched.core_util(0))))
    b.rt.at(64 * PERIOD, lambda _: at.setdefault("slept", (b.sched.thread_util(th), b.sched.core_util(0))))
    await b.rt.run()
    assert at["ran"] == (pytest.approx(256.0), pytest.approx(256.0))
    assert at["slept"] == (pytest.approx(128.0), pytest.approx(128.0))
