"""The ``exitstorm`` command line."""

from __future__ import annotations

import argparse
import contextlib
import sys
import threading
import time
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from actors.kernel.oom_kill import OOM_KILL_REASON
from actors.runtime.quantities import NS_PER_MS
from rich.console import Console
from rich.measure import Measurement
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from exitstorm.lab.config import load_experiment
from exitstorm.lab.world import World
from exitstorm.lifecycle import interrupted, interrupted_status, terminate_like_interrupt
from exitstorm.outputs.histograms import hdr_percentiles_ms, histogram_sources
from exitstorm.outputs.logs import EventFilter, matching_lines, parse_where, readable
from exitstorm.outputs.report import write_report
from exitstorm.realkernel.calibrate import DEFAULT_BASE, calibrate
from exitstorm.realkernel.validate import DEFAULT_PREVIEW_SCENARIO, DEFAULT_SCENARIO, validate, validation_table
from exitstorm.realkernel.victims import DEFAULT_RANDOM_BYTES
from exitstorm.realkernel.zram import HostError
from exitstorm.runs.compare import compare, paired_table, parse_variant, table
from exitstorm.runs.executor import MAX_RUNS, MODEL_FAILURES, OnRun, RunFailed, WorkerDied
from exitstorm.runs.experiment import run_experiment
from exitstorm.runs.sweep import kept_runs, parse_grid, sweep
from exitstorm.schema import ConfigError

EXIT_BAD_INPUT = 2
EXIT_MODEL_FAILURE = 1


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, status 2, like every other input error
        self.exit(EXIT_BAD_INPUT, f"exitstorm: {message} (see exitstorm {self.prog.split()[-1]} --help)\n")


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="exitstorm", description="Simulate exit storms under memory pressure.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    run = sub.add_parser("run", help="run one experiment and write its results directory")
    run.add_argument("config", help="scenario TOML file")
    run.add_argument("--seed", type=int, help="override scenario.seed")
    run.add_argument("--out", type=Path, help="results directory (default results/<config>-seed<N>)")
    run.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key (repeatable)")
    run.add_argument("--force", action="store_true", help="replace an existing results directory")
    cmp = sub.add_parser("compare", help="run variants of a scenario on the same seeds and compare them")
    cmp.add_argument("config", help="scenario TOML file (its [variants.NAME] tables are the default variants)")
    cmp.add_argument("--variant", action="append", metavar="NAME:KEY=VALUE,...",
                     help="a variant (repeatable); replaces the config's variants")
    cmp.add_argument("--seeds", type=int, default=10, help="seeds per variant, from scenario.seed (default 10)")
    cmp.add_argument("--out", type=Path, help="results directory (default results/<config>-compare)")
    cmp.add_argument("--workers", type=int, help="parallel runs (default: all cores)")
    cmp.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                     help="override a config key in every variant (repeatable)")
    cmp.add_argument("--force", action="store_true", help="replace an existing results directory")
    cal = sub.add_parser("calibrate", help="fit a device profile to process kills on this machine's kernel "
                                           "(root, Linux, ZRAM)")
    cal.add_argument("--out", type=Path, required=True, help="the profile to write (PROFILE.toml; raw "
                                                             "measurements go to PROFILE.measurements.json)")
    cal.add_argument("--quick", action="store_true", help="fewer sizes and repeats (under a minute)")
    cal.add_argument("--base", type=Path, default=DEFAULT_BASE,
                     help=f"device profile giving the costs not measured and the cpuset names (default {DEFAULT_BASE})")
    cal.add_argument("--random-bytes", type=int, default=DEFAULT_RANDOM_BYTES, metavar="N",
                     help=f"random bytes in each 4 KiB page of the victims, the rest zeros: their compressibility "
                          f"(default {DEFAULT_RANDOM_BYTES}, lz4 ratio about 3.9)")
    cal.add_argument("--force", action="store_true", help="replace existing files")
    val = sub.add_parser("validate", help="kill several processes together on this machine's kernel and in the "
                                          "simulator with PROFILE, and compare (root, Linux, ZRAM)")
    val.add_argument("profile", type=Path, help="a device profile (from exitstorm calibrate)")
    val.add_argument("--out", type=Path, help="results directory (default results/validation-<profile>)")
    val.add_argument("--swapped-mb", type=int, default=200,
                     help="MB per victim, swapped (resident in the resident cell) (default 200)")
    val.add_argument("--repeats", type=int, default=5,
                     help="real storms per cell, and simulated seeds; figures are medians (default 5)")
    val.add_argument("--random-bytes", type=int, default=DEFAULT_RANDOM_BYTES, metavar="N",
                     help=f"random bytes in each 4 KiB page of the victims (default {DEFAULT_RANDOM_BYTES})")
    val.add_argument("--scenario", type=Path, default=DEFAULT_SCENARIO,
                     help=f"the storm scenario simulated (default {DEFAULT_SCENARIO})")
    val.add_argument("--preview-scenario", type=Path, default=DEFAULT_PREVIEW_SCENARIO,
                     help=f"the storm with the SCHED_FIFO preview, run in both worlds, also as a fair nice-0 "
                          f"thread; its storm.count is N of the cells other than the storm curve "
                          f"(default {DEFAULT_PREVIEW_SCENARIO})")
    val.add_argument("--force", action="store_true", help="replace an existing results directory")
    swp = sub.add_parser("sweep", help="run a grid of config values x seeds (local processes or Dask)")
    swp.add_argument("config", help="scenario TOML file")
    swp.add_argument("--grid", action="append", required=True, metavar="KEY=V1,V2,...",
                     help="one axis of the grid (values are TOML; repeatable: the points are the cartesian product)")
    swp.add_argument("--seeds", type=int, default=10, help="seeds per point, from scenario.seed (default 10)")
    swp.add_argument("--out", type=Path, required=True, help="results directory")
    swp.add_argument("--workers", type=int, help="parallel local runs (default: all cores)")
    swp.add_argument("--dask", metavar="ADDRESS", help="run on this dask.distributed scheduler (tcp://host:8786) "
                                                       "instead of local processes")
    swp.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                     help="override a config key at every point (repeatable)")
    swp.add_argument("--resume", action="store_true", help="finish an interrupted sweep (OUT.partial)")
    swp.add_argument("--force", action="store_true", help="replace an existing OUT (or OUT.partial)")
    logs = sub.add_parser("logs", help="filter a run's events.jsonl (a readable table, or JSON lines)")
    logs.add_argument("dir", type=Path, help="a run's results directory")
    logs.add_argument("--actor", help="actor name or shell pattern (lmkd*)")
    logs.add_argument("--event", help="event name or shell pattern (lock_*)")
    logs.add_argument("--since", type=float, metavar="MS", help="from this virtual time (ms)")
    logs.add_argument("--until", type=float, metavar="MS", help="up to this virtual time (ms)")
    logs.add_argument("--where", action="append", default=[], metavar="KEY=VALUE",
                      help="a field's value, as JSON or text (repeatable; all must hold)")
    logs.add_argument("--json", action="store_true", help="print the matching lines as they are (JSON lines)")
    hist = sub.add_parser("hist", help="percentile tables from the .hlog files of a run or a comparison")
    hist.add_argument("dir", type=Path, help="a run's or a comparison's results directory (variants side by side)")
    hist.add_argument("name", nargs="?", help="histogram name or shell pattern (exit_latency, frame_*); default all")
    hist.add_argument("--vs", type=Path, metavar="DIR", help="another run or comparison, side by side")
    rep = sub.add_parser("report", help="plots (PNG) and report.md for a run or a comparison, in DIR/report/")
    rep.add_argument("dir", type=Path, help="a run's or a comparison's results directory")
    rep.add_argument("--force", action="store_true", help="replace an existing DIR/report/")
    return p


def _print_summary(summary: dict[str, Any], out: Path) -> None:
    print(f"exitstorm run: {summary['config']} seed={summary['seed']} device={summary['device']} "
          f"kernel={summary['kernel']} "
          f"{summary['duration_ms']:.0f} ms virtual")
    for name, fr in summary["periodic"].items():
        lat = fr["lateness_ms"]
        pct = "  ".join(f"{k}={lat[k]:.3f}" for k in ("p50", "p90", "p99", "max") if k in lat)
        print(f"  {name}: {fr['frames']} frames, {fr['janky']} janky; lateness ms {pct}")
    if summary["frames"] is not None:
        start = summary["preview_start_ms"]
        print(f"  camera: preview from {start} ms with {summary['free_mb_at_preview_start']} MB free; "
              f"stutter={summary['stutter']}; direct reclaim {summary['direct_reclaim_ms']['total']:.1f} ms")
    if summary["kill_log"]:
        log = summary["kill_log"]
        oom = sum(k["reason"] == OOM_KILL_REASON for k in log)
        by = f" ({oom} by the kernel's OOM killer)" if oom else ""
        print(f"  kills: {summary['kills']}{by}, adj {[k['adj'] for k in log]}")
    lat = summary["metrics"]["exit_latency_ms"]
    if lat.get("count"):
        print(f"  exits: {lat['count']}; kill->exit ms p50={lat['p50']:.3f} p99={lat['p99']:.3f} max={lat['max']:.3f}")
        share = summary["exit_profile"].get("free_swap_and_cache_nr", {}).get("share")
        if share is not None:
            print(f"  free_swap_and_cache_nr: {share:.1%} of do_exit")
    for label, share in (("whole run", summary["cpu_share"]["whole_run"]),
                         ("storm window", summary["cpu_share"]["storm"]["share"])):
        if share:
            print(f"  cpu share, {label}: " + ", ".join(f"{cls} {v:.1%}" for cls, v in share.items()))
    print(f"  results: {out}")


def _run(args: argparse.Namespace) -> None:
    if args.seed is not None and args.seed < 0:
        raise ConfigError(f"--seed: expected an integer >= 0, got {args.seed}")
    exp = load_experiment(args.config, args.set, seed=args.seed)
    out = args.out or Path("results") / f"{Path(args.config).stem}-seed{exp.config.scenario.seed}"
    console = Console(highlight=False)
    with _virtual_time_bar(console, exp.config.scenario.duration_s * 1000) as on_world:
        summary = run_experiment(exp, out, force=args.force, on_world=on_world)
    _print_summary(summary, out)


@contextlib.contextmanager
def _virtual_time_bar(console: Console, end_ms: float) -> Iterator[Callable[[World], None] | None]:
    """On a terminal, a progress bar of the run's virtual time, polled from a thread (the run never waits
    for it, and its outputs do not depend on it); yields the hook that hands it the world."""
    if not console.is_terminal:
        yield None
        return
    worlds: list[World] = []
    stop = threading.Event()
    with Progress(TextColumn("simulating"), BarColumn(), TextColumn("{task.completed:.0f} of {task.total:.0f} ms "
                                                                    "virtual"), TimeElapsedColumn(),
                  console=console, transient=True) as progress:
        task = progress.add_task("run", total=end_ms)

        def poll() -> None:
            while not stop.wait(0.1):
                if worlds:
                    progress.update(task, completed=worlds[0].runtime.now / NS_PER_MS)

        watcher = threading.Thread(target=poll, daemon=True)
        watcher.start()
        try:
            yield worlds.append
        finally:
            stop.set()
            watcher.join()


def _print_whole(console: Console, table: Table) -> None:
    """Print ``table`` at its natural width: a narrow terminal or a log file gets long lines, never cut numbers."""
    natural = Measurement.get(console, console.options.update_width(sys.maxsize), table).maximum
    if natural > console.width:
        console = Console(highlight=False, width=natural)
    console.print(table)


def _check_runs(args: argparse.Namespace) -> None:
    """--seeds and --workers of compare and sweep."""
    if not 1 <= args.seeds <= MAX_RUNS:
        raise ConfigError(f"--seeds: expected an integer in 1..{MAX_RUNS}, got {args.seeds}")
    if args.workers is not None and args.workers < 1:
        raise ConfigError(f"--workers: expected an integer >= 1, got {args.workers}")


@contextlib.contextmanager
def _runs_progress(console: Console, doing: str) -> Iterator[OnRun]:
    """On a terminal, a transient bar of the runs done of a comparison or sweep; yields its ``on_run``."""
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TextColumn("eta"), TimeRemainingColumn(), console=console, transient=True,
                  disable=not console.is_terminal) as progress:
        task = progress.add_task(doing, total=None)

        def on_run(done: int, total: int, kept: int) -> None:
            label = f"{doing} ({kept} runs kept from before)" if kept else doing
            progress.update(task, completed=done, total=total, description=label)

        yield on_run


def _compare(args: argparse.Namespace) -> None:
    _check_runs(args)
    variants = [parse_variant(text) for text in args.variant] if args.variant else None
    out = args.out or Path("results") / f"{Path(args.config).stem}-compare"
    console = Console(highlight=False)
    started = time.monotonic()
    with _runs_progress(console, "compare") as on_run:
        report = compare(args.config, variants, args.seeds, out, sets=args.set, workers=args.workers,
                         force=args.force, on_run=on_run)
    _print_whole(console, table(report))
    differences = paired_table(report)
    if differences is not None:
        _print_whole(console, differences)
    runs = len(report["variants"]) * len(report["seeds"])
    console.print(f"{runs} runs in {time.monotonic() - started:.1f} s wall; results: {out}/compare.json")


@contextlib.contextmanager
def _progress(console: Console, doing: str, first: str) -> Iterator[Callable[[int, int, str], None]]:
    """A transient progress bar for a measurement; yields the ``(done, total, what)`` callback that moves it."""
    with Progress(TextColumn(f"{doing}: {{task.description}}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=console, transient=True) as progress:
        task = progress.add_task(first, total=None)
        yield lambda done, total, what: progress.update(task, completed=done, total=total, description=what)


def _calibrate(args: argparse.Namespace) -> None:
    console = Console(highlight=False)
    with _progress(console, "calibrating", "setting up ZRAM swap") as on_kill:
        fit, contention = calibrate(args.out, args.quick, args.force, args.base, on_kill, args.random_bytes)
    console.print(f"kill -> reap = {fit.fixed_ms:.3f} ms + {fit.ms_per_mb_swapped:.4f} ms/MB swapped + "
                  f"{fit.ms_per_mb_resident:.4f} ms/MB resident (max error {fit.max_relative_error:.1%})")
    console.print(f"cacheline_transfer_ns = {contention.transfer_ns}: {contention.count} x {contention.swapped_mb} MB "
                  f"swapped killed together, median kill -> reap {contention.measured_ms:.2f} ms measured, "
                  f"{contention.model_ms:.2f} ms modelled"
                  + ("" if contention.monotone else " (the model's response was not monotone over the search)"))
    console.print(f"profile: {args.out}; raw measurements: {args.out.with_suffix('.measurements.json')}")


def _validate(args: argparse.Namespace) -> None:
    console = Console(highlight=False)
    out = args.out or Path("results") / f"validation-{args.profile.stem}"
    with _progress(console, "validating", "setting up") as on_step:
        report = validate(args.profile, out, swapped_mb=args.swapped_mb, random_bytes=args.random_bytes,
                          repeats=args.repeats, scenario=args.scenario, preview_scenario=args.preview_scenario,
                          force=args.force, on_step=on_step)
    _print_whole(console, validation_table(report))
    agreement = report["agreement"]
    (hits, total), (self_hits, self_total) = agreement["model"], agreement["machine"]
    console.print(f"the model: {hits} of {total} medians within {agreement['tolerance']:.0%} of the real median or "
                  f"inside the real range; the machine against itself (each storm against the others of its "
                  f"cell): {self_hits} of {self_total}")
    console.print(f"results: {out}/validation.json, {out}/validation.png")


def _sweep(args: argparse.Namespace) -> None:
    _check_runs(args)
    if args.dask is not None and args.workers is not None:
        raise ConfigError("--workers and --dask: choose one (Dask's workers are the cluster's)")
    grid = parse_grid(args.grid)
    console = Console(highlight=False)
    started = time.monotonic()
    with _runs_progress(console, "sweep") as on_run:
        try:
            report = sweep(args.config, grid, args.seeds, args.out, sets=args.set, workers=args.workers,
                           dask=args.dask, resume=args.resume, force=args.force, on_run=on_run)
        except KeyboardInterrupt:
            console.print(f"interrupted: {kept_runs(args.out)} finished runs kept in {args.out}.partial; "
                          f"finish with the same command and --resume")
            raise
        except RunFailed as exc:
            raise RunFailed(exc.job, f"{exc.cause}; {kept_runs(args.out)} finished runs kept in "
                                     f"{args.out}.partial") from None
        except WorkerDied as exc:
            raise WorkerDied(exc.job, f"{kept_runs(args.out)} finished runs kept in {args.out}.partial; finish "
                                      f"with the same command and --resume") from None
    points = {f"{p['point']} " + " ".join(f"{k}={v}" for k, v in p["overrides"].items()): p
              for p in report["points"]}
    _print_whole(console, table({**report, "variants": points}, rows="point"))
    console.print(f"{len(report['runs'])} runs in {time.monotonic() - started:.1f} s wall; results: "
                  f"{args.out}/sweep.json, sweep.csv, sweep_points.csv")


def _logs(args: argparse.Namespace) -> None:
    flt = EventFilter(args.actor, args.event, args.since, args.until, tuple(parse_where(w) for w in args.where))
    lines = matching_lines(args.dir, flt)
    with contextlib.suppress(BrokenPipeError):
        for line, record in lines:
            print(line if args.json else readable(record))


#: the percentiles ``exitstorm hist`` prints
HIST_PERCENTILES = (50, 90, 99, 99.9)


def _hist(args: argparse.Namespace) -> None:
    sources = histogram_sources(args.dir)
    if args.vs is not None:
        other = histogram_sources(args.vs)
        if set(other) & set(sources):  # two comparisons of the same variants: label them by directory
            sources = {f"{args.dir}:{label}": h for label, h in sources.items()}
            other = {f"{args.vs}:{label}": h for label, h in other.items()}
        sources.update(other)
    names = sorted({name for hists in sources.values() for name in hists})
    chosen = [n for n in names if args.name is None or fnmatchcase(n, args.name)]
    if not chosen:
        raise ConfigError(f"{args.dir}: no histogram {args.name!r}; there are: {', '.join(names)}")
    console = Console(highlight=False)
    rows = [f"p{p:g}" for p in HIST_PERCENTILES] + ["max", "count"]
    for name in chosen:
        figures = {label: hdr_percentiles_ms(h[name], HIST_PERCENTILES) if name in h else {}
                   for label, h in sources.items()}
        t = Table(title=f"{name} (ms)", min_width=len(name) + 10)
        t.add_column("")
        for label in figures:
            t.add_column(label, justify="right")
        two = len(figures) == 2
        if two:
            t.add_column("Δ", justify="right")
        for row in rows:
            values = [fig.get(row) for fig in figures.values()]
            cells = ["—" if v is None else str(v) for v in values]
            if two:
                a, b = values
                cells.append("—" if not a or b is None else f"{(b - a) / a:+.1%}")
            t.add_row(row, *cells)
        _print_whole(console, t)


def _report(args: argparse.Namespace) -> None:
    out = write_report(args.dir, args.force)
    print(f"report: {out / 'report.md'} ({', '.join(sorted(p.name for p in out.glob('*.png')))})")


def main(argv: Sequence[str] | None = None) -> int:
    terminate_like_interrupt()
    try:
        args = _parser().parse_args(argv)
        {"run": _run, "compare": _compare, "calibrate": _calibrate, "validate": _validate, "logs": _logs,
         "hist": _hist, "report": _report, "sweep": _sweep}[args.command](args)
    except (ConfigError, HostError, FileExistsError) as exc:
        print(f"exitstorm: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except (*MODEL_FAILURES, RunFailed) as exc:
        print(f"exitstorm: simulation failed: {exc}", file=sys.stderr)
        return EXIT_MODEL_FAILURE
    except WorkerDied as exc:
        print(f"exitstorm: {exc}", file=sys.stderr)
        return EXIT_MODEL_FAILURE
    except OSError as exc:  # a read-only or full filesystem, a name too long, a path through a file
        where = exc.filename if exc.filename is not None else "a file"
        print(f"exitstorm: {where}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        return interrupted_status()
    return interrupted_status() if interrupted() else 0  # an interrupt Python could not raise still counts
