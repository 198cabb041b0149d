"""Field validators for the model's data classes; errors carry the field name.

The lab turns :class:`InvalidValue` into ``file: key.path: expected …, got …``.
A numeric validator is a :class:`Bounds`, whose limits are data: the schema
can say what it admits, and a test can generate values just outside it.
"""

from __future__ import annotations

from typing import Any

from attrs import frozen


class InvalidValue(ValueError):
    def __init__(self, field: str, expected: str, got: Any) -> None:
        super().__init__(f"expected {expected}, got {got!r}")
        self.field = field


@frozen
class Bounds:
    """A number from ``lo`` to ``hi`` (either end excluded when open, absent when None); with ``zero_ok``,
    0 (off) as well. ``expected`` is what the error says."""

    expected: str
    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False
    zero_ok: bool = False
    integer: bool = False

    def admits(self, value: float) -> bool:
        if self.zero_ok and value == 0:
            return True
        above = self.lo is None or (value > self.lo if self.lo_open else value >= self.lo)
        below = self.hi is None or (value < self.hi if self.hi_open else value <= self.hi)
        return above and below

    def __call__(self, _inst: Any, attribute: Any, value: float) -> None:
        if not self.admits(value):
            raise InvalidValue(attribute.name, self.expected, value)


positive = Bounds("a number > 0", lo=0, lo_open=True)
non_negative = Bounds("a number >= 0", lo=0)
#: a compression ratio: uncompressed / compressed size, so at least 1
ratio = Bounds("a ratio >= 1", lo=1)
unit_share = Bounds("a share in (0, 1]", lo=0, hi=1, lo_open=True)


def between(lo: float, hi: float) -> Bounds:
    """A number in [lo, hi]: bounds that keep the work of a run finite (no 1 ns periods, no year-long runs)."""
    return Bounds(f"a number in [{lo:g}, {hi:g}]", lo=lo, hi=hi)


def zero_or_between(lo: float, hi: float) -> Bounds:
    """0 (off), or a number in [lo, hi]."""
    return Bounds(f"0 or a number in [{lo:g}, {hi:g}]", lo=lo, hi=hi, zero_ok=True)


def in_range(lo: int, hi: int) -> Bounds:
    return Bounds(f"an integer in {lo}..{hi}", lo=lo, hi=hi, integer=True)


def non_empty(_inst: Any, attribute: Any, value: Any) -> None:
    if not value:
        raise InvalidValue(attribute.name, "a non-empty value", value)


#: a field's metadata key: the field names something defined elsewhere (a cpuset, a lock, a frame, a thread
#: class), checked where both are known; a test replaces it with a name nothing defines
REFERS_TO = "refers_to"


def refers_to(what: str) -> dict[str, str]:
    return {REFERS_TO: what}
