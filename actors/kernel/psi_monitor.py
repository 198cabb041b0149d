"""Userspace PSI triggers on memory pressure (Documentation/accounting/psi.rst).

A trigger ``"some 70000 1000000"`` fires when the stall time of its kind
grew by at least the threshold within the trailing window. The kernel
samples the growth ten times per window and notifies at most once per
window; so does this monitor, from the :class:`actors.kernel.memory.Psi` totals.
"""

from __future__ import annotations

import collections
from typing import Literal

from attrs import frozen

from actors.kernel.memory import Psi
from actors.messages import PsiEvent
from actors.runtime.actor import Actor

SAMPLES_PER_WINDOW = 10


@frozen
class PsiTrigger:
    name: str
    kind: Literal["some", "full"]
    threshold_ns: int
    window_ns: int


class PsiMonitor(Actor):
    """Sends ``notify`` a PsiEvent when a trigger fires (the poll() on the trigger's fd returning)."""

    def __init__(self, name: str, psi: Psi, triggers: list[PsiTrigger], notify: Actor) -> None:
        super().__init__(name)
        if not triggers:
            raise ValueError(f"{name}: needs at least one trigger")
        for trig in triggers:
            if trig.threshold_ns <= 0 or trig.window_ns < SAMPLES_PER_WINDOW or trig.threshold_ns > trig.window_ns:
                raise ValueError(f"{name}: trigger {trig.name}: expected 0 < threshold <= window")
        self.psi = psi
        self.triggers = triggers
        self.notify = notify
        self.period_ns = min(t.window_ns for t in triggers) // SAMPLES_PER_WINDOW
        self._history = {t.name: collections.deque() for t in triggers}
        self._last_fired = {t.name: None for t in triggers}
        self.fired = {t.name: 0 for t in triggers}

    async def main(self) -> None:
        while True:
            self._sample()
            await self.sleep_until(self.now + self.period_ns)

    def _sample(self) -> None:
        now = self.now
        self.psi.flush()
        for trig in self.triggers:
            total = self.psi.some_ns if trig.kind == "some" else self.psi.full_ns
            history = self._history[trig.name]
            history.append((now, total))
            while history[0][0] < now - trig.window_ns:
                history.popleft()
            growth = total - history[0][1]
            last = self._last_fired[trig.name]
            if growth >= trig.threshold_ns and (last is None or now - last >= trig.window_ns):
                self._last_fired[trig.name] = now
                self.fired[trig.name] += 1
                self.log("psi_event", trigger=trig.name, stall_kind=trig.kind, growth_ns=growth)
                self.send(to=self.notify, message=PsiEvent(trig.name))
