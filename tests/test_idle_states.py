"""Leaving an idle state: a thread placed on a core that has been idle long enough runs an exit latency later."""

from __future__ import annotations

import pytest

from actors.cpu.idle_states import exit_latency_ns
from actors.cpu.work import Compute, Lock, Sleep, Unlock
from exitstorm.lab.config import load_device
from exitstorm.schema import ConfigError
from tests.conftest import ROOT, Bench

MS = 1_000_000
US = 1_000
#: WFI after 1 us, then a "c2" entered after 2 ms idle that takes 160 us to leave (a gs101 little core)
STATES = ((1 * US, 1 * US), (2 * MS, 160 * US))


def test_the_deepest_state_the_idle_stretch_lasted_for_sets_the_exit_latency() -> None:
    assert exit_latency_ns(STATES, 0) == 0  # a switch from one thread to the next: no idle state
    assert exit_latency_ns(STATES, 999) == 0
    assert exit_latency_ns(STATES, 1 * US) == 1 * US
    assert exit_latency_ns(STATES, 2 * MS - 1) == 1 * US
    assert exit_latency_ns(STATES, 2 * MS) == 160 * US
    assert exit_latency_ns(STATES, 10**12) == 160 * US
    assert exit_latency_ns((), 10**12) == 0


async def test_a_thread_woken_after_a_long_idle_waits_for_the_core_to_leave_it() -> None:
    b = Bench([1.0], slice_ns=3 * MS, idle_states=STATES)
    a = b.thread("a")
    b.start(0, a, [Sleep(3 * MS), Compute(1 * MS)])  # the core was idle from 0 to 0: it runs a at once
    await b.run()
    # woken at 3 ms on a core idle for 3 ms (c2): it runs from 3.16 ms
    assert b.done["a"].t_ns == 3 * MS + 160 * US + 1 * MS
    assert b.delays == [("a", 0), ("a", 160 * US)]
    assert (a.run_ns, a.wait_ns, a.sleep_ns) == (1 * MS, 160 * US, 3 * MS)
    core = b.sched.cores[0]
    assert core.idle_ns == 3 * MS + 160 * US and core.busy == {"other": 1 * MS}
    assert b.sched.ran_on(a) == [1 * MS]


async def test_a_short_idle_stretch_costs_only_the_shallow_state() -> None:
    b = Bench([1.0], slice_ns=3 * MS, idle_states=STATES)
    a = b.thread("a")
    b.start(0, a, [Sleep(1 * MS), Compute(1 * MS)])
    await b.run()
    assert b.done["a"].t_ns == 1 * MS + 1 * US + 1 * MS  # WFI: 1 us


async def test_a_thread_that_takes_the_core_while_it_is_still_leaving_idle_waits_for_the_rest() -> None:
    b = Bench([1.0], slice_ns=3 * MS, idle_states=STATES)
    a, r = b.thread("a"), b.thread("r", "fifo", prio=50)
    b.start(0, a, [Sleep(3 * MS), Compute(1 * MS)])
    b.start(3 * MS + 50 * US, r, [Compute(1 * MS)])  # preempts a 50 us into the core's 160 us exit
    await b.run()
    assert b.done["r"].t_ns == 3 * MS + 160 * US + 1 * MS
    assert ("r", 110 * US) in b.delays
    assert b.done["a"].t_ns == b.done["r"].t_ns + 1 * MS  # back from the queue: no idle stretch, no exit
    assert (a.run_ns, a.wait_ns) == (1 * MS, 160 * US + 1 * MS)
    assert b.sched.cores[0].idle_ns == 3 * MS + 160 * US


async def test_even_a_lock_waits_until_the_core_is_out_of_idle() -> None:
    b = Bench([1.0, 1.0], slice_ns=3 * MS, idle_states=STATES)
    b.sched.add_lock("L", "mutex")
    a, c = b.thread("a"), b.thread("c")
    b.start(0, a, [Sleep(3 * MS), Lock("L"), Compute(1 * MS), Unlock("L")])
    b.start(0, c, [Compute(3 * MS + 100 * US), Lock("L"), Compute(1 * MS), Unlock("L")])
    await b.run()
    # a's core is out of idle at 3.16 ms; c, busy all along, takes L at 3.1 ms and holds it to 4.1 ms;
    # a sleeps on the mutex, is woken on its core (idle 0.94 ms: WFI) and is done 1 ms after 4.1 ms + 1 us
    assert b.done["c"].t_ns == 4 * MS + 100 * US
    assert b.done["a"].t_ns == 4 * MS + 100 * US + 1 * US + 1 * MS


def test_the_phone_s_clusters_carry_gs101_s_idle_states() -> None:
    phone = load_device(ROOT / "configs" / "devices" / "phone_1p3p4.toml")
    assert [c.idle_state_table() for c in phone.clusters] == [
        ((1 * US, 1 * US), (2 * MS, 160 * US)), ((1 * US, 1 * US), (2500 * US, 190 * US)),
        ((1 * US, 1 * US), (3500 * US, 220 * US))]


@pytest.mark.parametrize("states, key", [
    ('[{ name = "c2", exit_latency_us = 300, min_residency_us = 200 }]', "min_residency_us"),
    ('[{ name = "a", exit_latency_us = 1, min_residency_us = 10 }, '
     '{ name = "b", exit_latency_us = 2, min_residency_us = 10 }]', "idle_states[1].min_residency_us"),
    ('[{ name = "c2", exit_latency_us = -1, min_residency_us = 10 }]', "exit_latency_us"),
])
def test_an_idle_state_that_cannot_be_is_refused_with_its_key(tmp_path, states: str, key: str) -> None:
    text = (ROOT / "configs" / "devices" / "vm_2core.toml").read_text()
    old = 'idle_states = [\n    { name = "halt", exit_latency_us = 45, min_residency_us = 1500 },\n]'
    assert old in text
    path = tmp_path / "dev.toml"
    path.write_text(text.replace(old, f"idle_states = {states}"))
    with pytest.raises(ConfigError, match=key.replace("[", r"\[").replace("]", r"\]")):
        load_device(path)
