"""Field validators for the model's data classes; errors carry the field name.

The lab turns :class:`InvalidValue` into ``file: key.path: expected …, got …``.
"""

from __future__ import annotations

from typing import Any


class InvalidValue(ValueError):
    def __init__(self, field: str, expected: str, got: Any) -> None:
        super().__init__(f"expected {expected}, got {got!r}")
        self.field = field


def positive(_inst: Any, attribute: Any, value: float) -> None:
    if not value > 0:
        raise InvalidValue(attribute.name, "a number > 0", value)


def non_negative(_inst: Any, attribute: Any, value: float) -> None:
    if not value >= 0:
        raise InvalidValue(attribute.name, "a number >= 0", value)


def ratio(_inst: Any, attribute: Any, value: float) -> None:
    """A compression ratio: uncompressed / compressed size, so at least 1."""
    if not value >= 1:
        raise InvalidValue(attribute.name, "a ratio >= 1", value)


def unit_share(_inst: Any, attribute: Any, value: float) -> None:
    if not 0 < value <= 1:
        raise InvalidValue(attribute.name, "a share in (0, 1]", value)


def between(lo: float, hi: float):
    """A number in [lo, hi]: bounds that keep the work of a run finite (no 1 ns periods, no year-long runs)."""
    def check(_inst: Any, attribute: Any, value: float) -> None:
        if not lo <= value <= hi:
            raise InvalidValue(attribute.name, f"a number in [{lo:g}, {hi:g}]", value)

    return check


def zero_or_between(lo: float, hi: float):
    """0 (off), or a number in [lo, hi]."""
    def check(_inst: Any, attribute: Any, value: float) -> None:
        if value != 0 and not lo <= value <= hi:
            raise InvalidValue(attribute.name, f"0 or a number in [{lo:g}, {hi:g}]", value)

    return check


def in_range(lo: int, hi: int):
    def check(_inst: Any, attribute: Any, value: int) -> None:
        if not lo <= value <= hi:
            raise InvalidValue(attribute.name, f"an integer in {lo}..{hi}", value)

    return check


def non_empty(_inst: Any, attribute: Any, value: Any) -> None:
    if not value:
        raise InvalidValue(attribute.name, "a non-empty value", value)
