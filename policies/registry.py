"""An axis of remedies: each remedy registered by name, with the class of its parameters.

A remedy is one module in its axis's package (``policies/<axis>/``). It
registers itself with the axis's :class:`Axis` when the package is imported,
so the config can select it by name, and read its parameters from
``[policies.<table>]``, without any other file knowing it exists.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any, Callable, Iterator

from attrs import frozen

#: what a remedy's check of its parameters against the kernel profile yields: (key under its table,
#: what was expected, what it got)
Finding = tuple[str, str, object]


@frozen
class Remedy:
    """A registered remedy. ``make(params, **model)`` builds it (``params`` is None without a ``params``
    class); ``check(params, kernel, known_locks)`` finds what in its parameters the kernel profile makes
    meaningless."""

    name: str
    make: Callable[..., Any]
    params: type | None
    table: str | None
    check: Callable[..., Iterator[Finding]] | None


class Axis:
    """The remedies of one axis, in the order their modules were found (sorted by module name)."""

    def __init__(self, name: str, default: str) -> None:
        self.name = name
        self.default = default
        self._remedies: dict[str, Remedy] = {}

    def register(self, name: str, *, params: type | None = None, table: str | None = None,
                 check: Callable[..., Iterator[Finding]] | None = None) -> Callable[[Any], Any]:
        """Decorator of a remedy's factory (a class or a function). Its parameters are read from
        ``[policies.<table>]`` (``table`` defaults to ``name``; remedies may share one)."""
        def decorate(make: Any) -> Any:
            if name in self._remedies:
                raise ValueError(f"policies.{self.name}: {name!r} is registered twice")
            self._remedies[name] = Remedy(name, make, params, (table or name) if params else None, check)
            return make

        return decorate

    def names(self) -> list[str]:
        return list(self._remedies)

    def remedies(self) -> list[Remedy]:
        return list(self._remedies.values())

    def get(self, name: str) -> Remedy:
        return self._remedies[name]

    def build(self, name: str, params: Any, **model: Any) -> Any:
        return self._remedies[name].make(params, **model)


def discover(package: str, path: list[str]) -> None:
    """Import every module of an axis's package, so that each remedy registers itself."""
    for module in pkgutil.iter_modules(path):
        importlib.import_module(f"{package}.{module.name}")
