"""Structured event log: one JSON object per line, through structlog.

Every record starts with ``t_ns`` (virtual time), ``actor`` and ``event``, in
that order, so that ``jq`` filters and ``grep`` read naturally and two runs of
the same config and seed produce the same bytes. Events belong to a category;
a disabled category costs one set lookup, done by the caller before it builds
any fields (see :meth:`EventLog.is_on`).
"""

from __future__ import annotations

import json
from typing import IO, Any, Iterable

import structlog

#: Categories a run can record. ``sched`` (every context switch) is verbose.
CATEGORIES = frozenset({"actor", "sched", "lock", "metric"})


def _ordered(_logger: Any, _method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """Put t_ns, actor and event first; keep the caller's field order after them."""
    head = {
        "t_ns": event_dict.pop("t_ns"),
        "actor": event_dict.pop("actor"),
        "event": event_dict.pop("event"),
    }
    head.update(event_dict)
    return head


def _dumps(obj: Any, **_kw: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), allow_nan=False)


class EventLog:
    """Writes events of the enabled categories as JSON lines to ``out``."""

    def __init__(self, out: IO[str] | None, categories: Iterable[str] = ()) -> None:
        enabled = frozenset(categories)
        unknown = enabled - CATEGORIES
        if unknown:
            raise ValueError(f"unknown event categories {sorted(unknown)}; known: {sorted(CATEGORIES)}")
        self._enabled = enabled if out is not None else frozenset()
        self.count = 0
        self._logger = (
            structlog.wrap_logger(
                structlog.WriteLogger(out),
                processors=[_ordered, structlog.processors.JSONRenderer(serializer=_dumps)],
            )
            if out is not None
            else None
        )

    def is_on(self, category: str) -> bool:
        return category in self._enabled

    def emit(self, category: str, t_ns: int, actor: str, event: str, **fields: Any) -> None:
        if category not in self._enabled:
            return
        self.count += 1
        self._logger.msg(event, t_ns=t_ns, actor=actor, **fields)
