"""The model's quantities: virtual time in integer ns, and the integer arithmetic on them.

Configs give durations in µs, ms and s; :class:`InNs` reads each as the
model's integer ns once, where the config is structured. Work is split into
exact integer shares (:func:`apportion`) and random durations are drawn in ns
from an actor's own stream (:func:`exp_ns`).
"""

from __future__ import annotations

import random
from typing import Any


#: virtual time is integer ns; configs give µs, ms and s
NS_PER_US = 1_000
NS_PER_MS = 1_000_000
NS_PER_S = 1_000_000_000


_NS_PER = {"s": NS_PER_S, "ms": NS_PER_MS, "us": NS_PER_US}


class InNs:
    """A config's duration field (named ``…_us``, ``…_ms`` or ``…_s``) read as the model's integer ns:
    ``period_ns = InNs("period_us")`` in the class. The one place a configured duration is rounded."""

    __slots__ = ("field", "per", "minimum")

    def __init__(self, field: str, minimum: int = 0) -> None:
        self.field = field
        self.per = _NS_PER[field.rsplit("_", 1)[1]]
        self.minimum = minimum

    def __get__(self, obj: Any, owner: Any = None) -> Any:
        if obj is None:
            return self
        return max(self.minimum, round(getattr(obj, self.field) * self.per))


def apportion(total: int, parts: int, index: int) -> tuple[int, int]:
    """Bounds of share ``index`` of ``parts`` equal shares of ``total`` (integer, exact sum)."""
    return total * index // parts, total * (index + 1) // parts


def exp_ns(rng: random.Random, mean_ns: int) -> int:
    """An exponential duration with mean ``mean_ns`` (0 when the mean is 0)."""
    return round(rng.expovariate(1.0 / mean_ns)) if mean_ns > 0 else 0
