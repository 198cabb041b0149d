"""Semantic nonsense, generated from the schema: each must be refused in one line naming the file and the key.

Three corpora, each one change at a time to a scenario that runs (and to its
device and kernel profiles):

- **bounds**: every numeric field whose validator is a ``Bounds`` gets the
  nearest values outside it (below the lowest, above the highest, an
  excluded end itself);
- **names**: every field marked ``refers_to`` (a cpuset, a lock, a frame, a
  thread class) gets a name that nothing defines;
- **relations**: keys that are valid alone but not together (a budget as
  long as its period, a start after the run's end, shares that do not sum
  to 1), one case per check that makes them.
"""

from __future__ import annotations

import copy
import functools
import types
import typing
from pathlib import Path
from typing import Any, Iterator

import attrs
import pytest

from actors.runtime.validators import REFERS_TO, Bounds
from exitstorm.lab.config import (DeviceConfig, KernelConfig, ScenarioConfig, _merged, _read_toml, _with_base,
    load_experiment, resolve_profile)
from exitstorm.schema import ConfigError
from tests.conftest import ROOT, exitstorm
from tests.test_fuzz_config import toml_document

SCENARIOS = ("camera_launch", "vm_storm_harness")
#: a policy's parameters are read only when the policy is chosen: the axis that chooses it
POLICY_AXIS = {"async_batch": ("swap_release", "async_batch"), "deferred_zs_free": ("swap_release", "deferred_zs_free"),
               "oom_reaper": ("reap", "oom_reaper"), "cgroup_kill": ("kill", "cgroup_kill")}
Key = tuple[str | int, ...]


@functools.cache
def documents(name: str) -> dict[str, tuple[type, dict[str, Any]]]:
    """The scenario (its base merged in, without variants, exit_classes written out) and its two profiles."""
    path = ROOT / "configs" / f"{name}.toml"
    scenario = _with_base(path, str(path))
    scenario.pop("variants", None)
    scenario["scenario"]["exit_classes"] = load_experiment(path).config.exit_work_classes()
    # the scenario's overrides of its profiles are folded into them, so that nothing masks a change
    device = _merged(_read_toml(resolve_profile(scenario["device"], "devices", path)),
                     scenario.pop("device_overrides", {}))
    kernel = _merged(_read_toml(resolve_profile(scenario["kernel"], "kernels", path)),
                     scenario.pop("kernel_overrides", {}))
    return {"scenario": (ScenarioConfig, scenario), "device": (DeviceConfig, device), "kernel": (KernelConfig, kernel)}


def _unwrap(t: Any) -> list[Any]:
    """The classes a field's type can hold: X | None → X; list[X] and dict[str, X] → X."""
    if isinstance(t, types.UnionType) or typing.get_origin(t) is typing.Union:
        return [u for arg in typing.get_args(t) if arg is not type(None) for u in _unwrap(arg)]
    return [t]


def _bounds(validator: Any) -> Bounds | None:
    if isinstance(validator, Bounds):
        return validator
    inner = getattr(validator, "validator", None)  # attrs.validators.optional(...)
    return _bounds(inner) if inner is not None else None


def fields(cls: type, doc: Any, key: Key = ()) -> Iterator[tuple[Key, attrs.Attribute]]:
    """(key path, field) of every field the document sets, nested tables and list elements included."""
    if not isinstance(doc, dict):
        return
    hints = typing.get_type_hints(cls)
    for f in attrs.fields(cls):
        if f.name not in doc:
            continue
        here, value = key + (f.name,), doc[f.name]
        yield here, f
        for t in _unwrap(hints[f.name]):
            origin, args = typing.get_origin(t), typing.get_args(t)
            if attrs.has(t):
                yield from fields(t, value, here)
            elif origin is list and args and attrs.has(args[0]) and isinstance(value, list):
                for i, item in enumerate(value):
                    yield from fields(args[0], item, here + (i,))
            elif origin is dict and len(args) == 2 and attrs.has(args[1]) and isinstance(value, dict):
                for k, item in value.items():
                    yield from fields(args[1], item, here + (k,))


def outside(b: Bounds) -> list[float]:
    """The values nearest to ``b`` that it refuses."""
    values = []
    for end, is_open, sign in ((b.lo, b.lo_open, -1), (b.hi, b.hi_open, 1)):
        if end is None:
            continue
        if is_open:
            values.append(end)
        else:
            step = 1 if b.integer else max(abs(end) * 0.01, 1e-3)
            near = end + sign * step
            values.append(end / 2 if b.zero_ok and near == 0 else near)
    return [v for v in values if not b.admits(v)]


def rendered(key: Key) -> str:
    return "".join(f"[{k}]" if isinstance(k, int) else f".{k}" for k in key).lstrip(".")


def _set(doc: dict[str, Any], key: Key, value: Any) -> None:
    node: Any = doc
    for k in key[:-1]:
        node = node[k]
    node[key[-1]] = value


def _get(doc: dict[str, Any], key: Key) -> Any:
    node: Any = doc
    for k in key:
        node = node[k]
    return node


def _policy_on(doc: dict[str, Any], key: Key) -> None:
    if len(key) > 2 and key[0] == "policies" and key[1] in POLICY_AXIS:
        axis, name = POLICY_AXIS[key[1]]
        doc["policies"][axis] = name


def cases() -> Iterator[Any]:
    """(scenario, file, key, value) of every bound and name the schema declares, violated."""
    for name in SCENARIOS:
        for part, (cls, doc) in documents(name).items():
            for key, f in fields(cls, doc):
                value = _get(doc, key)
                b = _bounds(f.validator)
                if b is not None and isinstance(value, (int, float)) and not isinstance(value, bool):
                    for bad in outside(b):
                        bad = int(bad) if b.integer and float(bad).is_integer() else bad
                        yield pytest.param(name, part, key, bad, id=f"{name}:{part}:{rendered(key)}={bad!r}")
                if REFERS_TO in f.metadata and value is not None:
                    bad = value + ["nonesuch"] if isinstance(value, list) else "nonesuch"
                    yield pytest.param(name, part, key, bad, id=f"{name}:{part}:{rendered(key)}=nonesuch")


CASES = list(cases())


def write(tmp: Path, name: str, part: str, key: Key, value: Any) -> tuple[Path, Path]:
    """The scenario and its profiles in ``tmp``, with ``key`` of ``part`` set to ``value``: (scenario, changed file)."""
    docs = {p: copy.deepcopy(doc) for p, (_cls, doc) in documents(name).items()}
    _set(docs[part], key, value)
    if part == "scenario":
        _policy_on(docs["scenario"], key)
    for p, kind in (("device", "devices"), ("kernel", "kernels")):
        (tmp / kind).mkdir(exist_ok=True)
        (tmp / kind / f"{docs['scenario'][p]}.toml").write_text(toml_document(docs[p]))
    scenario = tmp / f"{name}.toml"
    scenario.write_text(toml_document(docs["scenario"]))
    changed = scenario if part == "scenario" else tmp / f"{part}s" / f"{docs['scenario'][part]}.toml"
    return scenario, changed


def refused(scenario: Path, sets: list[str] = ()) -> str:
    with pytest.raises(ConfigError) as caught:
        load_experiment(scenario, sets)
    text = str(caught.value)
    assert "\n" not in text and text
    return text


def test_the_corpus_covers_every_part_and_kind() -> None:
    keys = {(p.values[1], rendered(p.values[2])) for p in CASES}
    assert len(CASES) > 300
    for must in [("scenario", "camera.preview.period_us"), ("scenario", "storm.pool_poller.interval_us"),
                 ("scenario", "lmkd.props.psi_window_ms"), ("device", "costs.swap_entry_free_ns"),
                 ("kernel", "exit.swap_entry.segments[0].share"), ("kernel", "sched.base_slice_ns"),
                 ("scenario", "policies.deferred_zs_free.drop_locks"), ("scenario", "lmkd.victim_cpuset"),
                 ("kernel", "exit.swap_entry.segments[0].locks"), ("scenario", "scenario.exit_classes")]:
        assert must in keys, must


@pytest.mark.parametrize(("name", "part", "key", "value"), CASES)
def test_a_value_the_schema_refuses_is_one_line_naming_file_and_key(tmp_path: Path, name: str, part: str,
                                                                    key: Key, value: Any) -> None:
    scenario, changed = write(tmp_path, name, part, key, value)
    text = refused(scenario)
    assert str(changed) in text, text
    assert f": {rendered(key)}" in text or f": {rendered(key)}[" in text, text


RELATIONS = [
    # (scenario, --set, keys removed, the key the message must name)
    ("camera_launch", ["camera.preview.budget_us=16666.667"], [], "camera.preview.budget_us"),
    ("camera_launch", ["periodic[0].budget_us=20000"], [], "periodic[0].budget_us"),
    ("camera_launch", ["apps.swapped_mb.min=600"], [], "apps.swapped_mb.max"),
    ("camera_launch", ["apps.bands[0].adj_min=1000"], [], "apps.bands[0].adj_max"),
    ("camera_launch", ["apps.bands[1].share=0.5"], [], "apps.bands"),
    ("camera_launch", ["scenario.duration_s=0.2"], [], "camera.launch_ms"),
    ("camera_launch", ["periodic[0].start_ms=6000"], [], "periodic[0].start_ms"),
    ("camera_launch", ["lmkd.main_thread.prio=0"], [], "lmkd.main_thread.prio"),
    ("camera_launch", ['policies.swap_release="deferred_zs_free"', 'policies.deferred_zs_free.drop_locks=["pt"]'],
     [], "policies.deferred_zs_free.drop_locks[0]"),
    ("camera_launch", ['policies.swap_release="async_batch"', 'kernel="swap_table"',
                       'policies.async_batch.split_frame="free_swap_slot"'], [], "policies.async_batch.split_frame"),
    ("camera_launch", ['policies.reap="oom_reaper"'], ["policies.oom_reaper"], "policies.oom_reaper"),
    ("camera_launch", ["kernel_overrides.exit.chunk_entries=500"], [], "exit.chunk_entries"),
    ("camera_launch", ['kernel_overrides.exit.swap_entry.segments=[{frames = ["zap_pte_range"], share = 0.5}]'], [],
     "exit.swap_entry.segments"),
    ("camera_launch", ["kernel_overrides.exit.swap_entry.segments=[]"], [], "exit.swap_entry.segments"),
    ("camera_launch", ['kernel_overrides.locks.ptl={kind = "mutex", scope = "range", lines = 1}'], [],
     "locks.ptl.lines"),
    ("camera_launch", ['kernel_overrides.exit.swap_entry.segments=[{frames = ["zap_pte_range"], share = 1.0, '
                       'readers = ["ptl"]}]'], [], "exit.swap_entry.segments[0].readers"),
    ("camera_launch", ["device_overrides.cpusets.foreground=[8]"], [], "cpusets.foreground"),
    ("camera_launch", ["device_overrides.tick_interrupt.max_us=3.0"], [], "tick_interrupt.max_us"),
    ("camera_launch", ['device_overrides.cpuctl.nowhere={uclamp_min = 0, latency_sensitive = false}'], [],
     "cpuctl.nowhere"),
    ("vm_storm", ["device_overrides.energy_aware=true"], [], "energy_aware"),
    ("camera_launch", ['variants.late={"camera.launch_ms" = 7000}'], [], "camera.launch_ms"),
    ("vm_storm_harness", ["storm.kill_at_ms=5000"], [], "storm.kill_at_ms"),
    ("vm_storm_harness", ["storm.reapers=1", 'policies.reap="none"'], [], "storm.reapers"),
    ("vm_storm_harness", ["storm.reapers=1"], ["storm.reaper_thread"], "storm.reaper_thread"),
]


@pytest.mark.parametrize(("name", "sets", "removed", "key"), RELATIONS,
                         ids=[" ".join(r[1] + r[2])[:60] for r in RELATIONS])
def test_keys_valid_alone_but_not_together_are_one_line_naming_the_key(tmp_path: Path, name: str, sets: list[str],
                                                                       removed: list[str], key: str) -> None:
    doc = copy.deepcopy(documents(name)["scenario"][1])
    for dotted in removed:
        *parents, last = dotted.split(".")
        del _get(doc, tuple(parents))[last]
    scenario = tmp_path / f"{name}.toml"
    scenario.write_text(toml_document(doc))
    for kind in ("devices", "kernels"):
        (tmp_path / kind).symlink_to(ROOT / "configs" / kind)
    text = refused(scenario, sets)
    assert f": {key}:" in text, text


@pytest.mark.parametrize("index", [0, len(CASES) // 3, 2 * len(CASES) // 3, len(CASES) - 1])
def test_through_the_cli_it_is_status_2_and_nothing_written(tmp_path: Path, index: int) -> None:
    name, part, key, value = CASES[index].values
    scenario, changed = write(tmp_path, name, part, key, value)
    out = tmp_path / "out"
    proc = exitstorm("run", str(scenario), "--out", str(out))
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert str(changed) in proc.stderr and "Traceback" not in proc.stderr and not out.exists()
