"""Strict TOML → attrs structuring with one-line, path-precise errors.

cattrs alone coerces (``int("3")``, ``int(1.5)``) and reports validator
failures at the enclosing table; users editing TOML need the opposite: exact
types, and ``file: key.path: expected …, got …``.
"""

from __future__ import annotations

import math
import re
from typing import Any, Literal, get_args

import cattrs
from cattrs.errors import ForbiddenExtraKeysError

from actors.runtime.validators import InvalidValue


class ConfigError(Exception):
    """Bad user input; ``str()`` is the one line printed before exiting with status 2.

    What the user wrote (a key, a path, a --set text) may hold a newline or
    another control character: those are shown escaped, so the line stays one.
    """

    def __str__(self) -> str:
        text = super().__str__()
        return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)


class _Mismatch(TypeError):
    def __init__(self, expected: str, got: Any) -> None:
        super().__init__(f"expected {expected}, got {_describe(got)}")


def _describe(value: Any) -> str:
    if isinstance(value, (dict, list)):
        return f"a {'table' if isinstance(value, dict) else 'list'}"
    return repr(value)


#: no quantity of a config (MB, µs, ms, ratios, counts) comes near this; beyond it, unit conversions overflow
MAX_MAGNITUDE = 1e15


# -- the converter --------------------------------------------------------------
def _int(value: Any, _t: Any) -> int:
    if type(value) is not int:
        raise _Mismatch("an integer", value)
    if abs(value) > MAX_MAGNITUDE:
        raise _Mismatch(f"an integer of magnitude <= {MAX_MAGNITUDE:g}", value)
    return value


def _float(value: Any, _t: Any) -> float:
    if type(value) not in (int, float):
        raise _Mismatch("a number", value)
    if not math.isfinite(value) or abs(value) > MAX_MAGNITUDE:
        raise _Mismatch(f"a finite number of magnitude <= {MAX_MAGNITUDE:g}", value)
    return float(value)


def _str(value: Any, _t: Any) -> str:
    if type(value) is not str:
        raise _Mismatch("a string", value)
    return value


def _bool(value: Any, _t: Any) -> bool:
    if type(value) is not bool:
        raise _Mismatch("true or false", value)
    return value


def _is_literal(t: Any) -> bool:
    return getattr(t, "__origin__", None) is Literal


def _literal(value: Any, t: Any) -> Any:
    choices = get_args(t)
    if value not in choices or type(value) is not type(choices[0]):
        raise _Mismatch("one of " + ", ".join(repr(c) for c in choices), value)
    return value


def make_converter() -> cattrs.Converter:
    conv = cattrs.Converter(forbid_extra_keys=True)
    conv.register_structure_hook(int, _int)
    conv.register_structure_hook(float, _float)
    conv.register_structure_hook(str, _str)
    conv.register_structure_hook(bool, _bool)
    conv.register_structure_hook_func(_is_literal, _literal)
    return conv


_CONVERTER = make_converter()


def _format(exc: BaseException, _type: Any) -> str:
    if isinstance(exc, InvalidValue):
        return f"{exc.field}\t{exc}"
    if isinstance(exc, ForbiddenExtraKeysError):
        extra = sorted(exc.extra_fields)
        return f"{extra[0]}\tunknown key (not one of the known keys of this table)"
    if isinstance(exc, KeyError):
        return "\trequired key is missing"
    if isinstance(exc, _Mismatch):
        return f"\t{exc}"
    if isinstance(exc, (TypeError, AttributeError)):
        return f"\texpected a table, got {exc}"
    return f"\t{exc}"


def _tidy(path: str) -> str:
    path = re.sub(r"\['([^']*)'\]", r".\1", path)
    return path.lstrip(".")


def structure(data: Any, cls: type, source: str, prefix: str = "") -> Any:
    """Structure ``data`` as ``cls`` or raise :class:`ConfigError` naming ``source`` and the key."""
    try:
        return _CONVERTER.structure(data, cls)
    except Exception as exc:
        messages = cattrs.transform_error(exc, path="", format_exception=_format)
        first = messages[0] if messages else str(exc)
        body, _, path = first.rpartition(" @ ")
        if not body:
            body, path = first, ""
        sub, _, message = body.partition("\t")
        keys = [p for p in (prefix, _tidy(path), sub) if p]
        raise ConfigError(f"{source}: {'.'.join(keys) or '(top level)'}: {message}") from None
