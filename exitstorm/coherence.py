"""Checks across keys and files: values that are each valid, but together make a run meaningless.

The schema checks every value on its own (its type, its range). What it
cannot see is a relation between a scenario and its profiles, or between
two keys far apart: a camera launched after the run has ended, a lock the
kernel profile does not have, a thread class no thread carries. Each of
these would run and print figures that mean nothing (no frames, so no janky
frame; a peak CPU share of 0), so each is refused at load with the key
path and the reason, for ``run``, ``compare`` and ``sweep`` alike.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Iterator

from actors.exit_path import split_index
from exitstorm.schema import ConfigError
from policies.swap_release import DeferredParams

if TYPE_CHECKING:
    from exitstorm.config import Kernel, ScenarioConfig

def check_coherent(sc: ScenarioConfig, kernel: Kernel, source: str, kernel_locks: Callable[[], set[str]]) -> None:
    """Refuse, in one line naming ``source`` and the key, what would make a run of ``sc`` on ``kernel``
    meaningless. ``kernel_locks()`` is every lock the kernel profiles beside ``kernel`` declare."""
    for key, expected, got in _incoherent(sc, kernel, kernel_locks):
        raise ConfigError(f"{source}: {key}: expected {expected}, got {got!r}")


def _incoherent(sc: ScenarioConfig, kernel: Kernel,
                kernel_locks: Callable[[], set[str]]) -> Iterator[tuple[str, str, object]]:
    run = sc.scenario
    end_ms = run.duration_s * 1000
    within = f"a time before the run ends (scenario.duration_s = {run.duration_s:g} s)"
    for key, ms in _starts(sc):
        if ms >= end_ms:
            yield key, within, ms
    known = sorted(sc.thread_classes())
    for i, name in enumerate(run.exit_classes or ()):
        if name not in known:
            yield f"scenario.exit_classes[{i}]", f"a thread class of this scenario or the model ({', '.join(known)})", \
                name
    release = sc.policies.swap_release
    params = {"async_batch": sc.policies.async_batch, "deferred_zs_free": sc.policies.deferred_zs_free}.get(release)
    if params is not None:
        yield from _split_path(params, kernel, kernel_locks, f"policies.{release}")


def _starts(sc: ScenarioConfig) -> Iterator[tuple[str, float]]:
    """(key, ms) of every moment the scenario's actors first act."""
    for i, spec in enumerate(sc.periodic):
        yield f"periodic[{i}].start_ms", spec.start_ms
    if sc.camera is not None:
        yield "camera.launch_ms", sc.camera.launch_ms
    if sc.storm is not None:
        yield "storm.kill_at_ms", sc.storm.kill_at_ms


def _split_path(params: DeferredParams, kernel: Kernel, kernel_locks: Callable[[], set[str]],
                key: str) -> Iterator[tuple[str, str, object]]:
    """A deferred release splits the kernel's swap-entry path at a frame it has (another kernel's frame would
    defer nothing), and leaves out locks that exist: this kernel's, or another generation's (one list of
    parameters serves every kernel profile a comparison runs)."""
    path = kernel.exit.swap_entry
    try:
        split_index(path, params.split_frame)
    except ValueError:
        frames = sorted({frame for seg in path.segments for frame in seg.frames})
        yield f"{key}.split_frame", f"a frame of kernel {kernel.name!r}'s exit.swap_entry path ({', '.join(frames)})", \
            params.split_frame
        return
    known = set(kernel.locks) | kernel_locks()
    for i, lock in enumerate(params.drop_locks):
        if lock not in known:
            yield f"{key}.drop_locks[{i}]", f"a lock of a kernel profile ({', '.join(sorted(known))})", lock
