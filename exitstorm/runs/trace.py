"""A run's timeline as a Chrome trace-event file (``trace.json``).

Opens in the Perfetto UI, chrome://tracing and speedscope. Layout:

* process "CPUs": one track per core, a complete event per slice a thread
  ran there (named after the thread; args: class, policy and nice/prio);
* one process per thread class, one track per thread: "running" slices (the
  CPU in args) and, nested in them or between them, lock waits ("wait
  zs_pool->lock": spinning on-CPU or asleep on a mutex);
* the frames of each periodic thread (the camera preview, SurfaceFlinger)
  beside its track, as async spans from release to done (a late frame
  overlaps the next), janky frames named and coloured as such;
* global instant events for kills, exits, memory returned and the preview's
  start; counter tracks for free memory, the ZRAM pool and PSI memory
  pressure (share of each sampling period with some / all tasks stalled),
  and one per core for its PELT utilization (0..1024).

Timestamps are virtual µs with ns precision. Events are sorted by time
(a parent before the slices nested in it), so every track's timestamps are
monotonic. The timeline is capped by ``scenario.trace_max_events``; when the
cap is reached the trace stops there (``otherData.truncated_at_ms``).
"""

from __future__ import annotations

import json
from importlib.metadata import version
from pathlib import Path
from typing import Any

from actors.cpu.scheduler import Thread
from actors.runtime.quantities import NS_PER_MS, NS_PER_US
from exitstorm.lab.units import mb
from exitstorm.lab.world import World

CPUS_PID = 0
#: track ids of threads start here, so that they never collide with the CPU tracks' (one per core)
THREAD_TID_BASE = 1000

#: a trace event before it is written: (ts_ns, -dur_ns, pid, tid, name, its JSON text); sorting these
#: puts events in time order and a parent before the slices nested in it
Event = tuple[int, int, int, int, str, str]


def us(ns: int) -> str:
    """Virtual ns as trace µs, exact to the ns (no fraction when whole, to keep the file short)."""
    q, r = divmod(ns, NS_PER_US)
    return f"{q}.{r:03d}" if r else str(q)


def sched_label(th: Thread) -> str:
    """``fifo 2`` or ``nice -20``: how the thread is scheduled, as ps/top would say."""
    return f"nice {th.nice}" if th.fair else f"fifo {th.prio}"


def _js(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def _meta(kind: str, pid: int, tid: int, value: str | int) -> str:
    key = "sort_index" if kind.endswith("sort_index") else "name"
    return _js({"name": kind, "ph": "M", "pid": pid, "tid": tid, "args": {key: value}})


def _complete(name: str, cat: str, start: int, end: int, pid: int, tid: int, args: str, extra: str = "") -> Event:
    """A complete event; ``name`` and ``args`` are JSON texts already (encoded once per thread or lock)."""
    text = (f'{{"name":{name},"cat":"{cat}","ph":"X","ts":{us(start)},"dur":{us(end - start)},'
            f'"pid":{pid},"tid":{tid},"args":{args}{extra}}}')
    return start, start - end, pid, tid, name, text


def _instant(name: str, t_ns: int, **args: Any) -> Event:
    text = (f'{{"name":{_js(name)},"cat":"event","ph":"i","s":"g","ts":{us(t_ns)},"pid":{CPUS_PID},"tid":0,'
            f'"args":{_js(args)}}}')
    return t_ns, 0, CPUS_PID, 0, name, text


def _counter(name: str, t_ns: int, pid: int, args: dict[str, float]) -> Event:
    return t_ns, 0, pid, 0, name, f'{{"name":"{name}","ph":"C","ts":{us(t_ns)},"pid":{pid},"tid":0,"args":{_js(args)}}}'


def trace_events(world: World) -> list[str]:
    """The run's trace events as JSON texts: track names first, then every event in time order."""
    tl = world.timeline
    cut = tl.truncated_at
    threads = world.scheduler.threads
    classes = sorted({th.thread_class for th in threads})
    class_pid = {cls: i + 1 for i, cls in enumerate(classes)}
    memory_pid = len(classes) + 1
    by_name = {th.name: th for th in threads}

    meta = [_meta("process_name", CPUS_PID, 0, "CPUs"), _meta("process_sort_index", CPUS_PID, 0, 0)]
    meta += [_meta("thread_name", CPUS_PID, core.cid, f"CPU {core.cid}") for core in world.scheduler.cores]
    meta += [_meta("process_name", memory_pid, 0, "memory"), _meta("process_sort_index", memory_pid, 0, 1)]
    for cls, pid in class_pid.items():
        meta += [_meta("process_name", pid, 0, cls), _meta("process_sort_index", pid, 0, 10 + pid)]
    meta += [_meta("thread_name", class_pid[th.thread_class], THREAD_TID_BASE + th.tid, th.name) for th in threads]

    on_cpu = [(_js(th.name), th.thread_class, _js({"class": th.thread_class, "sched": sched_label(th)}),
               class_pid[th.thread_class], THREAD_TID_BASE + th.tid) for th in threads]
    events: list[Event] = []
    add = events.append
    for start, end, cpu, tid in tl.ran:
        name, cls, args, pid, track = on_cpu[tid]
        add(_complete(name, cls, start, end, CPUS_PID, cpu, args))
        add(_complete('"running"', "sched", start, end, pid, track, f'{{"cpu":{cpu}}}'))
    wait_text = {(lock, kind): (_js(f"wait {lock}"), _js({"lock": lock, "kind": kind}))
                 for lock, kind in {(lock, kind) for _s, _e, _t, lock, kind in tl.waited}}
    for start, end, tid, lock, kind in tl.waited:
        _name, _cls, _args, pid, track = on_cpu[tid]
        name, args = wait_text[lock, kind]
        add(_complete(name, "lock", start, end, pid, track, args))
    for name, k, release, done, late, janky in tl.frames:
        # async spans: a late frame overlaps the next one's release, which nested slices cannot show
        th = by_name[name]
        pid, tid = class_pid[th.thread_class], THREAD_TID_BASE + th.tid
        label = _js(f"{name} frame {k} janky" if janky else f"{name} frame {k}")
        head = f'{{"name":{label},"cat":"frame","id":"{name}/{k}","ph":'
        args = _js({"lateness_ms": late / NS_PER_MS, "janky": janky})
        color = '"terrible"' if janky else '"good"'
        add((release, 0, pid, tid, label,
             f'{head}"b","ts":{us(release)},"pid":{pid},"tid":{tid},"cname":{color},"args":{args}}}'))
        add((done, 0, pid, tid, label, f'{head}"e","ts":{us(done)},"pid":{pid},"tid":{tid}}}'))

    marks: list[Event] = []
    for proc in world.processes:
        if proc.killed_at is not None:
            reason = world.kill_reasons.get(proc.pid)
            why = {} if reason is None else {"reason": reason[0], "via": reason[2]}
            marks.append(_instant(f"kill {proc.name}", proc.killed_at, pid=proc.pid, adj=proc.adj, **why))
        if proc.exited_at is not None:
            marks.append(_instant(f"exit {proc.name}", proc.exited_at, pid=proc.pid))
        if proc.freed_at is not None:
            marks.append(_instant(f"memory returned {proc.name}", proc.freed_at, pid=proc.pid))
    if world.preview_start is not None:
        marks.append(_instant("preview start", world.preview_start[0]))
    samples = world.sampler.samples
    for (t0, s0), (t1, s1) in zip(samples, samples[1:]):
        marks.append(_counter("free memory", t0, memory_pid, {"MB": mb(s0.free)}))
        marks.append(_counter("ZRAM pool", t0, memory_pid, {"MB": mb(s0.zpool)}))
        marks.append(_counter("PSI memory", t0, memory_pid, {
            "some %": round(100 * (s1.psi_some_ns - s0.psi_some_ns) / (t1 - t0), 3),
            "full %": round(100 * (s1.psi_full_ns - s0.psi_full_ns) / (t1 - t0), 3)}))
    for t, cores in world.util_sampler.samples:
        marks += [_counter(f"util CPU {cid}", t, CPUS_PID, {"util": u}) for cid, u in enumerate(cores)]
    events += marks if cut is None else [m for m in marks if m[0] < cut]
    events.sort()
    return meta + [e[5] for e in events]


def write_trace(world: World, path: Path) -> None:
    """Write ``trace.json``: the events one per line (greppable, diffable), then what produced them.

    The lines go to the file one by one: the text is never joined into one string.
    """
    exp = world.experiment
    tl = world.timeline
    other = _js({
        "exitstorm": version("exitstorm"),
        "config": exp.source,
        "seed": exp.config.scenario.seed,
        "max_events": tl.max_records,
        "truncated_at_ms": None if tl.truncated_at is None else tl.truncated_at / NS_PER_MS,
    })
    with path.open("w") as out:
        out.write('{"traceEvents":[\n')
        sep = ""
        for line in trace_events(world):
            out.write(sep)
            out.write(line)
            sep = ",\n"
        out.write(f'\n],"displayTimeUnit":"ms","otherData":{other}}}\n')
