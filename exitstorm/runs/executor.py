"""Where the runs of a comparison or a sweep execute: this process, local worker processes, or Dask.

A :class:`RunJob` is one experiment (a config, overrides, a seed) and the
results directory it writes; every executor yields ``(job, headline
figures)`` as runs finish, in completion order (callers key results by job,
so the outputs do not depend on that order). Local workers ignore SIGINT:
on Ctrl-C the parent stops handing out runs, the runs under way finish and
are kept, and the interrupt goes on in the parent.
"""

from __future__ import annotations

import concurrent.futures
import gc
import json
import os
import signal
from pathlib import Path
from typing import Any, Callable, Iterator

from attrs import frozen

from actors.checks.invariants import InvariantViolation
from actors.kernel.memory import MemoryAccountingError
from actors.runtime.actor import ActorFailed

from exitstorm.lab.config import Experiment, load_experiment
from exitstorm.lifecycle import die_with_parent, held_signals, release_signals
from exitstorm.outputs.figures import headline
from exitstorm.runs.experiment import run_experiment
from exitstorm.schema import ConfigError

#: a name and its dotted-key overrides (a comparison's variant, a sweep's grid point)
Variant = tuple[str, dict[str, Any]]
#: called as runs finish: (runs done, runs in total, runs found already done when it started)
OnRun = Callable[[int, int, int], None]
#: how a run fails when the model breaks or runs out of memory (status 1), as opposed to bad input
MODEL_FAILURES = (ActorFailed, MemoryAccountingError, InvariantViolation)


#: the most runs one comparison or sweep may ask for (variants or points x seeds)
MAX_RUNS = 100_000


def check_run_count(groups: int, seeds: int, what: str) -> None:
    """Refuse, before anything is planned, a comparison or sweep of more than MAX_RUNS runs."""
    if groups * seeds > MAX_RUNS:
        raise ConfigError(f"{what}: expected at most {MAX_RUNS} runs, got {groups} x {seeds} = {groups * seeds}")


@frozen
class RunJob:
    config: str
    sets: tuple[str, ...]
    variant: Variant
    seed: int
    out: Path

    def describe(self) -> str:
        changes = ", ".join(f"{k}={v!r}" for k, v in self.variant[1].items())
        return f"{self.variant[0]} seed {self.seed}" + (f" ({changes})" if changes else "")


class RunFailed(Exception):
    """A run of a comparison or sweep failed; names the run, and the simulation's own message."""

    def __init__(self, job: RunJob, cause: BaseException | str) -> None:
        self.job = job
        self.cause = str(cause)
        super().__init__(f"{job.describe()}: {cause}")


class WorkerDied(Exception):
    """A worker process died under a run (killed, or out of memory): the pool is gone with it."""

    def __init__(self, job: RunJob | None, note: str = "") -> None:
        self.job = job
        self.note = note

    def __str__(self) -> str:
        run = "" if self.job is None else f" ({self.job.describe()} was among the runs under way)"
        return f"a worker process died (killed, or out of memory){run}" + (f"; {self.note}" if self.note else "")


def _figures(job: RunJob, result: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """``result()`` (a run, or a future's result), with a model failure named after its run."""
    try:
        return result()
    except MODEL_FAILURES as exc:
        raise RunFailed(job, exc) from None


#: experiments already read in this process, per (config, --set overrides, variant name and overrides): two
#: sweeps in one process may name different points alike ("p000"), so the name alone is no key
_LOADED: dict[tuple[str, tuple[str, ...], str, str], Experiment] = {}


def load_variant(config: str, sets: tuple[str, ...], variant: Variant) -> Experiment:
    """The experiment of one variant (read once per process; bad input raises ConfigError)."""
    key = (config, sets, variant[0], json.dumps(variant[1], sort_keys=True, default=repr))
    exp = _LOADED.get(key)
    if exp is None:
        exp = _LOADED[key] = load_experiment(config, list(sets), variant=variant)
    return exp


def plan_seeds(config: str, sets: tuple[str, ...], variants: list[Variant], first: int, seeds: int) -> list[int]:
    """Check every variant before anything runs (workers fork with them loaded); the seeds to run."""
    for variant in variants:
        load_variant(config, sets, variant)
    return list(range(first, first + seeds))


def run_job(job: RunJob) -> dict[str, Any]:
    """Run one job, write its results directory, return its headline figures."""
    summary = run_experiment(load_variant(job.config, job.sets, job.variant).with_seed(job.seed), job.out)
    gc.collect()  # a run's world is a web of cycles (actors <-> runtime): free it before the next run
    return headline(summary)


def _worker_init(parent: int) -> None:
    """A worker dies with its parent (a killed parent leaves no worker writing into its results). SIGINT,
    SIGTERM and SIGHUP are the parent's to handle (it forks workers with them held; here they are released
    and ignored). gc.freeze: what a worker inherits (modules, loaded configs) is never garbage, so the
    collection after each run walks only that run's objects."""
    if not die_with_parent(parent):
        os._exit(1)
    release_signals(signal.SIG_IGN)
    gc.freeze()


def run_local(jobs: list[RunJob], workers: int | None) -> Iterator[tuple[RunJob, dict[str, Any]]]:
    """Run ``jobs`` in this process (one worker) or in a pool of ``workers`` processes (default: all cores)."""
    workers = min(workers or os.cpu_count() or 1, len(jobs))
    if workers <= 1:
        for job in jobs:
            yield job, _figures(job, lambda job=job: run_job(job))
        return
    pool = concurrent.futures.ProcessPoolExecutor(max_workers=workers, initializer=_worker_init,
                                                  initargs=(os.getpid(),))
    futures: dict[concurrent.futures.Future[dict[str, Any]], RunJob] = {}
    broken = False
    try:
        try:
            with held_signals():
                for job in jobs:  # workers start as jobs are submitted: one may die before the last is
                    futures[pool.submit(run_job, job)] = job
        except concurrent.futures.process.BrokenProcessPool:
            broken = True
            raise WorkerDied(next(iter(futures.values()), None)) from None
        for future in concurrent.futures.as_completed(futures):
            job = futures[future]
            try:
                figures = _figures(job, future.result)
            except concurrent.futures.process.BrokenProcessPool:
                broken = True
                raise WorkerDied(job) from None
            yield job, figures
    finally:
        if broken:
            # a worker killed while it held the pool's call-queue lock leaves the others waiting on it for
            # good, and shutdown(wait=True) with them: the survivors are of no use, end them first
            for process in list(pool._processes.values()):
                process.kill()
        pool.shutdown(wait=True, cancel_futures=True)


def run_dask(jobs: list[RunJob], address: str) -> Iterator[tuple[RunJob, dict[str, Any]]]:
    """Run ``jobs`` on the Dask scheduler at ``address`` (its workers must see the same filesystem)."""
    try:
        from distributed import Client, as_completed
    except ImportError:
        raise ConfigError("--dask: dask.distributed is not installed (pip install 'exitstorm[dask]')") from None
    try:
        client = Client(address, timeout="10s")
    except (OSError, ValueError, TypeError) as exc:
        raise ConfigError(f"--dask {address}: cannot reach a Dask scheduler there ({exc})") from None
    with client:
        futures = client.map(run_job, jobs, pure=False)
        job_of = {future.key: job for future, job in zip(futures, jobs)}
        try:
            for future in as_completed(futures):
                job = job_of[future.key]
                yield job, _figures(job, future.result)
        finally:
            client.cancel(futures)
