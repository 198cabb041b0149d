"""``exitstorm logs``: filter a run's ``events.jsonl`` by actor, event, time and field values.

Filters stream the file (a long run's log is never loaded whole). Actor and
event take shell-style patterns (``lmkd*``); ``--where key=value`` compares a
field with the value read as JSON (``janky=true``, ``cpu=3``) or, failing
that, as text.
"""

from __future__ import annotations

import json
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any, Iterator

from attrs import frozen

from actors.runtime.quantities import NS_PER_MS
from exitstorm.schema import ConfigError


def parse_where(text: str) -> tuple[str, str]:
    """``key=value`` as (key, value text)."""
    key, eq, raw = text.partition("=")
    if not eq or not key.strip():
        raise ConfigError(f"--where {text}: expected key=value")
    return key.strip(), raw


def field_is(value: Any, text: str) -> bool:
    """A field equals ``text`` read as JSON (``true`` is not ``1``), or is that very string."""
    if isinstance(value, str):
        return value == text
    try:
        wanted = json.loads(text)
    except ValueError:
        return False
    return value == wanted and isinstance(value, bool) == isinstance(wanted, bool)


@frozen
class EventFilter:
    """Which events to show; None or empty means any."""

    actor: str | None = None
    event: str | None = None
    since_ms: float | None = None
    until_ms: float | None = None
    where: tuple[tuple[str, str], ...] = ()

    def matches(self, record: dict[str, Any]) -> bool:
        t_ms = record["t_ns"] / NS_PER_MS
        if self.since_ms is not None and t_ms < self.since_ms:
            return False
        if self.until_ms is not None and t_ms > self.until_ms:
            return False
        if self.actor is not None and not fnmatchcase(record["actor"], self.actor):
            return False
        if self.event is not None and not fnmatchcase(record["event"], self.event):
            return False
        return all(key in record and field_is(record[key], text) for key, text in self.where)


def events_file(run_dir: Path) -> Path:
    path = run_dir / "events.jsonl"
    if not path.is_file():
        raise ConfigError(f"{run_dir}: not a results directory (no events.jsonl)")
    return path


def matching_lines(run_dir: Path, flt: EventFilter) -> Iterator[tuple[str, dict[str, Any]]]:
    """``(line, record)`` of every event that passes ``flt``, in file (virtual time) order."""
    path = events_file(run_dir)
    with path.open() as fh:
        for number, line in enumerate(fh, 1):
            try:
                record = json.loads(line)
            except ValueError as exc:
                raise ConfigError(f"{path}:{number}: corrupt, not an event line exitstorm writes ({exc})") from None
            if not isinstance(record, dict) or not {"t_ns", "actor", "event"} <= record.keys():
                raise ConfigError(f"{path}:{number}: corrupt, expected an object with t_ns, actor and event")
            if flt.matches(record):
                yield line.rstrip("\n"), record


def readable(record: dict[str, Any]) -> str:
    """One aligned line: time in ms, actor, event, then the fields as key=value."""
    fields = " ".join(f"{k}={json.dumps(v, separators=(',', ':')) if not isinstance(v, str) else v}"
                      for k, v in record.items() if k not in ("t_ns", "actor", "event"))
    return f"{record['t_ns'] / NS_PER_MS:14.6f}  {record['actor']:<20} {record['event']:<18} {fields}".rstrip()
