"""Checks across keys and files: values that are each valid, but together make a run meaningless.

The schema checks every value on its own (its type, its range). What it
cannot see is a relation between a scenario and its profiles, or between
two keys far apart: a camera launched after the run has ended, a lock the
kernel profile does not have, a thread class no thread carries (a remedy
checks its own parameters against the kernel profile: its registered
``check``). Each of these would run and print figures that mean nothing (no frames, so no janky
frame; a peak CPU share of 0), so each is refused at load with the key
path and the reason, for ``run``, ``compare`` and ``sweep`` alike.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Iterator

from exitstorm.schema import ConfigError
from policies import AXES

if TYPE_CHECKING:
    from exitstorm.lab.config import KernelConfig, ScenarioConfig


def check_coherent(sc: ScenarioConfig, kernel: KernelConfig, source: str,
                   kernel_locks: Callable[[], set[str]]) -> None:
    """Refuse, in one line naming ``source`` and the key, what would make a run of ``sc`` on ``kernel``
    meaningless. ``kernel_locks()`` is every lock the kernel profiles beside ``kernel`` declare."""
    for key, expected, got in _incoherent(sc, kernel, kernel_locks):
        raise ConfigError(f"{source}: {key}: expected {expected}, got {got!r}")


def _incoherent(sc: ScenarioConfig, kernel: KernelConfig,
                kernel_locks: Callable[[], set[str]]) -> Iterator[tuple[str, str, object]]:
    run = sc.scenario
    within = f"a time before the run ends (scenario.duration_s = {run.duration_s:g} s)"
    for key, ms, ns in _starts(sc):
        if ns >= run.duration_ns:
            yield key, within, ms
    known = sorted(sc.thread_classes())
    for i, name in enumerate(run.exit_classes or ()):
        if name not in known:
            yield f"scenario.exit_classes[{i}]", f"a thread class of this scenario or the model ({', '.join(known)})", \
                name
    for axis in AXES:
        remedy = sc.policies.remedy(axis)
        if remedy.check is not None:
            for key, expected, got in remedy.check(sc.policies.params(axis), kernel.profile, kernel.name,
                                                   kernel_locks):
                yield f"policies.{remedy.table}.{key}", expected, got


def _starts(sc: ScenarioConfig) -> Iterator[tuple[str, float, int]]:
    """(key, ms as configured, ns) of every moment the scenario's actors first act."""
    for i, spec in enumerate(sc.periodic):
        yield f"periodic[{i}].start_ms", spec.start_ms, spec.start_ns
    if sc.camera is not None:
        yield "camera.launch_ms", sc.camera.launch_ms, sc.camera.launch_ns
    if sc.storm is not None:
        yield "storm.kill_at_ms", sc.storm.kill_at_ms, sc.storm.kill_at_ns
