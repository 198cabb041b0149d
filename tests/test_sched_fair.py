"""Fair-class arithmetic against the kernel's tables and formulas."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from actors.cpu import sched_fair


def test_weights_are_the_kernel_table() -> None:
    assert sched_fair.nice_to_weight(0) == 1024
    assert sched_fair.nice_to_weight(5) == 335
    assert sched_fair.nice_to_weight(-10) == 9548
    assert sched_fair.nice_to_weight(-20) == 88761
    assert sched_fair.nice_to_weight(19) == 15
    with pytest.raises(ValueError):
        sched_fair.nice_to_weight(20)


@pytest.mark.parametrize("nice", range(-20, 20))
def test_wmult_is_two_to_the_32_over_weight_within_one(nice: int) -> None:
    assert abs(sched_fair.nice_to_wmult(nice) - 2**32 / sched_fair.nice_to_weight(nice)) < 1


def test_each_nice_step_is_about_ten_percent_cpu() -> None:
    w = sched_fair.SCHED_PRIO_TO_WEIGHT
    assert all(1.19 < w[i] / w[i + 1] < 1.29 for i in range(39))


@pytest.mark.parametrize(
    ("ncpus", "scaling", "factor"),
    [(1, "log", 1), (2, "log", 2), (4, "log", 3), (8, "log", 4), (64, "log", 4),
     (6, "linear", 6), (16, "linear", 8), (8, "none", 1)],
)
def test_tunable_scaling(ncpus: int, scaling: str, factor: int) -> None:
    assert sched_fair.tunable_factor(ncpus, scaling) == factor


def test_base_slice_is_3ms_on_8_cpus() -> None:
    assert sched_fair.base_slice_ns(750_000, 8, "log") == 3_000_000


def test_eligibility_is_exact_at_the_weighted_average() -> None:
    ents = [(0, 1024), (300, 2048)]  # V = 200
    assert sched_fair.avg_vruntime(ents) == 200
    total, load = sched_fair.load_sums(ents)
    assert sched_fair.entity_eligible(200, total, load)
    assert not sched_fair.entity_eligible(201, total, load)


@given(st.lists(st.tuples(st.integers(-10**15, 10**15), st.sampled_from(sched_fair.SCHED_PRIO_TO_WEIGHT)),
                min_size=1, max_size=20))
def test_some_entity_is_always_eligible(ents: list[tuple[int, int]]) -> None:
    total, load = sched_fair.load_sums(ents)
    assert any(sched_fair.entity_eligible(v, total, load) for v, _ in ents)
    assert sched_fair.entity_eligible(min(v for v, _ in ents), total, load)
