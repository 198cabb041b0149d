"""Hostile input: whatever a config holds, exitstorm says what is wrong in one line (status 2) or runs.

Generated documents start from ``configs/camera_launch.toml`` with one key
changed (a wrong type, a huge, negative or non-finite number, a string, a
list, a deeply nested value), removed, or added; others are raw text or
bytes. A document that loads is run for 250 ms of virtual time (the camera launches at 200 ms): it must run,
or be refused as an impossible combination, or end in the model's own
out-of-memory failure; never a traceback, never a hang.
"""

from __future__ import annotations

import copy
import json
import math
import tomllib
from pathlib import Path
from typing import Any

import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from actors.kernel.memory import MemoryAccountingError
from actors.runtime.actor import ActorFailed
from exitstorm.lab.config import load_experiment
from exitstorm.runs.experiment import build_world
from exitstorm.schema import ConfigError
from tests.conftest import ROOT, exitstorm

CAMERA = ROOT / "configs" / "camera_launch.toml"
BASE = tomllib.loads(CAMERA.read_text())


def toml_value(v: Any) -> str:
    """A value as TOML text (inline tables and arrays, so any nesting fits on one line)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf") if math.isinf(v) else repr(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    return "{" + ", ".join(f"{json.dumps(k, ensure_ascii=False)} = {toml_value(x)}" for k, x in v.items()) + "}"


def toml_document(doc: dict[str, Any]) -> str:
    return "".join(f"{json.dumps(k, ensure_ascii=False)} = {toml_value(v)}\n" for k, v in doc.items())


def key_paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    """Every key path of a document (tables, list elements and leaves)."""
    paths = [prefix] if prefix else []
    if isinstance(node, dict):
        for k, v in node.items():
            paths += key_paths(v, prefix + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            paths += key_paths(v, prefix + (i,))
    return paths


PATHS = key_paths(BASE)
scalars = st.one_of(
    st.integers(-(10**30), 10**30), st.sampled_from([0, -1, 1, 2**63, -(2**63)]),
    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([1e300, -1e300, 5e-324, -0.0]),
    st.text(max_size=12), st.booleans(),
)
hostile = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(min_size=1, max_size=6), inner, max_size=3)), max_leaves=8)


def _parent(doc: Any, path: tuple) -> Any:
    for k in path[:-1]:
        doc = doc[k]
    return doc


@st.composite
def mutated(draw: st.DrawFn) -> dict[str, Any]:
    doc = copy.deepcopy(BASE)
    path = draw(st.sampled_from(PATHS))
    parent, last = _parent(doc, path), path[-1]
    action = draw(st.sampled_from(["replace", "replace", "replace", "remove", "add"]))
    if action == "replace":
        parent[last] = draw(hostile)
    elif action == "remove":
        del parent[last]
    else:  # an unknown key: in the table the path names, else beside it, else at the top
        target = parent[last] if isinstance(parent[last], dict) else parent if isinstance(parent, dict) else doc
        target[draw(st.text(min_size=1, max_size=8))] = draw(hostile)
    return doc


def _sandbox(tmp: Path) -> Path:
    """A folder like configs/ (the profiles beside the scenario) for generated scenario files."""
    for name in ("devices", "kernels"):
        link = tmp / name
        if not link.exists():
            link.symlink_to(ROOT / "configs" / name)
    return tmp / "fuzzed.toml"


def _one_line_naming(exc: ConfigError, path: Path) -> None:
    text = str(exc)
    assert "\n" not in text and text.strip() == text and text
    assert str(path) in text or "devices" in text or "kernels" in text, text


def _load_and_run(path: Path) -> None:
    try:
        exp = load_experiment(path, ["scenario.duration_s=0.25"])
        world = build_world(exp, None)
    except ConfigError as exc:
        _one_line_naming(exc, path)
        return
    try:
        trio.run(world.runtime.run)
    except ActorFailed as exc:  # the model's own out-of-memory end, with its cause in one line
        assert "out of memory" in exc.cause and "\n" not in str(exc), exc
    except MemoryAccountingError as exc:
        assert "out of memory" in str(exc), exc


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                   HealthCheck.too_slow])
@given(mutated())
def test_a_config_with_one_key_changed_is_refused_in_one_line_or_runs(tmp_path: Path, doc: dict[str, Any]) -> None:
    path = _sandbox(tmp_path)
    path.write_text(toml_document(doc))
    _load_and_run(path)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.one_of(st.binary(max_size=200), st.text(max_size=200).map(str.encode),
                 st.sampled_from([b"", b"\xff\xfe", b"[scenario", b"a = [" * 50_000, b"a = {b = " * 50_000,
                                  b"scenario = 1", b"[[scenario]]", b"x = nan"])))
def test_garbage_files_are_refused_in_one_line(tmp_path: Path, data: bytes) -> None:
    path = _sandbox(tmp_path)
    path.write_bytes(data)
    with pytest.raises(ConfigError) as caught:
        load_experiment(path)
    _one_line_naming(caught.value, path)


@settings(max_examples=60, deadline=None)
@given(st.sampled_from([p for p in PATHS if all(isinstance(k, str) for k in p)]), hostile)
def test_a_hostile_set_is_refused_in_one_line_or_runs(key: tuple, value: Any) -> None:
    try:
        exp = load_experiment(CAMERA, [f"{'.'.join(key)}={toml_value(value)}", "scenario.duration_s=0.25"])
        world = build_world(exp, None)
    except ConfigError as exc:
        assert "\n" not in str(exc) and str(exc)
        return
    try:
        trio.run(world.runtime.run)
    except ActorFailed as exc:
        assert "out of memory" in exc.cause, exc


@pytest.mark.parametrize(("content", "expected"), [
    (b"", "device: required key is missing"),
    (b"\x00\x01\xff garbage", "invalid TOML"),
    (b"a = " + b"[" * 100_000, "nested too deeply"),
    (b"device = 'phone_1p3p4'\nkernel = 'slot_cache'\n[scenario]\nduration_s = nan\n", "duration_s"),
    (f'base = "{CAMERA}"\n[apps]\n"a\\nkey" = 1\n'.encode(), "apps.a\\nkey: unknown key"),
])
def test_the_cli_refuses_hostile_files_in_one_line_and_writes_nothing(tmp_path: Path, content: bytes,
                                                                      expected: str) -> None:
    path = _sandbox(tmp_path)
    path.write_bytes(content)
    out = tmp_path / "out"
    proc = exitstorm("run", str(path), "--out", str(out))
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and expected in proc.stderr and str(path) in proc.stderr
    assert "Traceback" not in proc.stderr and not out.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


@pytest.mark.parametrize(("setting", "expected"), [
    ("scenario.duration_s=1e300", "scenario.duration_s: expected a finite number of magnitude <= 1e+15"),
    ("scenario.duration_s=7200", "scenario.duration_s: expected a number in [0.001, 3600]"),
    ("scenario.sample_ms=1e-9", "scenario.sample_ms: expected a number in [0.1, 60000]"),
    ("camera.preview.period_us=0.001", "camera.preview.period_us: expected a number in [100, 1e+07]"),
    ("load[0].burst_mean_us=1e-9", "load[0].burst_mean_us: expected a number in [1, 1e+09]"),
    ("apps.count=1000000000000000000", "apps.count: expected an integer of magnitude <= 1e+15"),
])
def test_values_that_would_overflow_or_never_end_are_refused(setting: str, expected: str) -> None:
    proc = exitstorm("run", str(CAMERA), "--set", setting, "--out", "/nonexistent/never-written")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert expected in proc.stderr
