"""The actor runtime: virtual time, quiescence, ordering, timers, failures, random streams."""

from __future__ import annotations

import io
import json

import pytest
import trio

from actors.runtime.actor import Actor, ActorFailed, Runtime, stream_seed
from actors.runtime.events import EventLog
from actors.runtime.sampler import Sampler


class Recorder(Actor):
    def __init__(self, name: str, seen: list) -> None:
        super().__init__(name)
        self.seen = seen

    async def main(self) -> None:
        while True:
            msg = await self.receive()
            self.seen.append((self.now, self.name, msg))


class Pinger(Actor):
    """Sends to ``peer`` at t = 0 and after sleeping; records when each step happened."""

    def __init__(self, name: str, peer: Actor, seen: list) -> None:
        super().__init__(name)
        self.peer = peer
        self.seen = seen

    async def main(self) -> None:
        for i in range(3):
            self.send(to=self.peer, message=(self.name, i))
        await self.sleep(5)
        self.send(to=self.peer, message=(self.name, "late"), delay_ns=10)
        self.seen.append((self.now, self.name, "slept"))


async def test_time_advances_only_to_due_events_and_messages_keep_send_order() -> None:
    seen: list = []
    rt = Runtime(seed=0)
    sink = rt.add(Recorder("sink", seen))
    rt.add(Pinger("p1", sink, seen))
    rt.add(Pinger("p2", sink, seen))
    await rt.run()
    assert seen == [
        (0, "sink", ("p1", 0)), (0, "sink", ("p1", 1)), (0, "sink", ("p1", 2)),
        (0, "sink", ("p2", 0)), (0, "sink", ("p2", 1)), (0, "sink", ("p2", 2)),
        (5, "p1", "slept"), (5, "p2", "slept"),
        (15, "sink", ("p1", "late")), (15, "sink", ("p2", "late")),
    ]
    assert rt.now == 15  # nothing left to do: the run ends at the last event


class Ticker(Actor):
    """Ticks at 1, 4, 7, ... recording (k, due, now); asks the runtime to stop after tick ``stop_after``."""

    def __init__(self, name: str, ticks: list, stop_after: int | None = None) -> None:
        super().__init__(name)
        self.ticks = ticks
        self.stop_after = stop_after

    async def main(self) -> None:
        k = 0
        while True:
            await self.sleep_until(1 + 3 * k)
            self.ticks.append((k, 1 + 3 * k, self.now))
            if k == self.stop_after:
                self.runtime.stop()
            k += 1


async def test_run_stops_at_end_time() -> None:
    ticks: list = []
    rt = Runtime(seed=0, end_ns=10)
    rt.add(Ticker("tick", ticks))
    await rt.run()
    assert ticks == [(0, 1, 1), (1, 4, 4), (2, 7, 7), (3, 10, 10)]
    assert rt.now == 10


async def test_stop_ends_the_run_between_two_steps_of_the_actors() -> None:
    # what a signal handler does: the ticker asks for the stop at its third tick (t=7); that step
    # completes, and nothing after it runs
    ticks: list = []
    rt = Runtime(seed=0, end_ns=100)
    rt.add(Ticker("tick", ticks, stop_after=2))
    await rt.run()
    assert [now for _k, _due, now in ticks] == [1, 4, 7] and rt.stopped


async def test_an_actor_exception_names_the_actor_and_the_virtual_time() -> None:
    class Faulty(Actor):
        async def main(self) -> None:
            await self.sleep(1_500_000)
            raise ZeroDivisionError("boom")

    rt = Runtime(seed=0)
    rt.add(Faulty("lmkd"))
    rt.add(Recorder("idle", []))
    with pytest.raises(ActorFailed) as info:
        await rt.run()
    assert info.value.actor == "lmkd" and info.value.t_ns == 1_500_000
    assert "lmkd" in str(info.value) and "1.500000 ms" in str(info.value)


async def test_an_event_callback_exception_names_its_owner() -> None:
    class Passive(Actor):
        passive = True

        def on_start(self) -> None:
            self.runtime.at(7, self.explode)

        def explode(self, _arg: object) -> None:
            raise RuntimeError("bad state")

    rt = Runtime(seed=0)
    rt.add(Passive("scheduler"))
    with pytest.raises(ActorFailed, match=r"'scheduler' failed at t=7 ns"):
        await rt.run()


async def test_wake_resumes_a_parked_actor_with_a_value() -> None:
    got = []

    class Waiter(Actor):
        async def main(self) -> None:
            got.append((await self.park(), self.now))

    rt = Runtime(seed=0)
    w = rt.add(Waiter("w"))
    rt.at(42, lambda _: rt.wake(w, "done"))
    await rt.run()
    assert got == [("done", 42)]


def test_random_streams_depend_on_seed_and_name_only() -> None:
    assert stream_seed(1, "app/3") == stream_seed(1, "app/3")
    assert stream_seed(1, "app/3") != stream_seed(2, "app/3")
    assert stream_seed(1, "app/3") != stream_seed(1, "app/4")
    a, b = Runtime(seed=9), Runtime(seed=9)
    x = a.add(Recorder("x", []))
    b.add(Recorder("other", []))
    y = b.add(Recorder("x", []))
    assert [x.rng.random() for _ in range(3)] == [y.rng.random() for _ in range(3)]


async def test_event_log_lines_start_with_time_actor_event_and_skip_disabled_categories() -> None:
    out = io.StringIO()

    class Talker(Actor):
        async def main(self) -> None:
            await self.sleep(3)
            self.log("kill", pid=12, reason="psi")
            self.log("switch", category="sched", cpu=1)

    rt = Runtime(seed=0, events=EventLog(out, ["actor"]))
    rt.add(Talker("lmkd"))
    await rt.run()
    lines = out.getvalue().splitlines()
    assert lines == ['{"t_ns":3,"actor":"lmkd","event":"kill","pid":12,"reason":"psi"}']
    assert list(json.loads(lines[0])) == ["t_ns", "actor", "event", "pid", "reason"]


def test_unknown_event_category_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown event categories"):
        EventLog(io.StringIO(), ["sched", "bogus"])


def test_ordering_is_independent_of_trio_task_order() -> None:
    """Many actors messaging each other at the same instants: same trace on every run."""

    class Gossip(Actor):
        def __init__(self, name: str, peers: list, seen: list) -> None:
            super().__init__(name)
            self.peers = peers
            self.seen = seen

        async def main(self) -> None:
            for _ in range(4):
                peer = self.peers[self.rng.randrange(len(self.peers))]
                self.send(peer, self.name)
                msg = await self.receive()
                self.seen.append((self.now, self.name, msg))
                await self.sleep(self.rng.randrange(3))

    def trace(seed: int) -> list:
        seen: list = []
        peers: list = []
        rt = Runtime(seed=seed)
        for i in range(12):
            peers.append(rt.add(Gossip(f"g{i}", peers, seen)))
        trio.run(rt.run)
        return seen

    first = trace(5)
    for _ in range(5):
        assert trace(5) == first
    assert trace(6) != first


async def test_a_full_sampler_drops_every_other_sample_and_doubles_its_period() -> None:
    rt = Runtime(seed=0, end_ns=100)
    seen: list[int] = []
    sampler = rt.add(Sampler("s", 10, lambda: rt.now, max_samples=4, on_sample=lambda t, _v: seen.append(t)))
    await rt.run()
    # kept: 0 10 20 30 40 → 0 20 40 (period 20); 60 80 → 0 40 80 (period 40); the next would be at 120
    assert [t for t, _ in sampler.samples] == [0, 40, 80] and sampler.period_ns == 40
    assert seen == [0, 10, 20, 30, 40, 60, 80]  # every sample taken, before any is dropped
