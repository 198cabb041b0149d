"""The units of the outputs: virtual ns as ms and pages as MB, rounded as the files show them."""

from __future__ import annotations

from actors.kernel.memory import PAGES_PER_MB
from actors.runtime.quantities import NS_PER_MS


def ms(ns: int | None) -> float | None:
    """Virtual ns as ms (6 decimals: ns precision); None stays None."""
    return None if ns is None else round(ns / NS_PER_MS, 6)


def mb(pages: int) -> float:
    """Pages as MB (3 decimals)."""
    return round(pages / PAGES_PER_MB, 3)
