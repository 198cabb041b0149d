"""The kernel's OOM killer (mm/oom_kill.c): what an allocation does when reclaim finds nothing to take.

``out_of_memory()`` runs in the allocating thread. While an earlier OOM
victim has not yet given its memory back (its mm not yet ``MMF_OOM_SKIP``:
neither reaped nor torn down by its exit), nobody else is chosen
(``oom_evaluate_task()`` aborts). Otherwise the process of highest
:func:`oom_badness` is the victim: SIGKILLed, marked, and queued for the
oom_reaper, which reaps it after ``OOM_REAPER_DELAY`` unless its exit got
there first. A process that is already dying (SIGKILLed by lmkd, its mm not
yet detached) is marked and queued without a second signal
(``task_will_free_mem()``). Either way the allocating thread then sleeps a
jiffy (``schedule_timeout_killable(1)``) and tries again.

Simplifications: the candidates are the model's processes (apps, storm
victims); the system's processes and the launching camera, which the model
does not represent as killable tasks, are not. While a victim is pending the
kernel's allocator loops through reclaim and the OOM check; the model's
thread sleeps a jiffy per try instead. The OOM killer's own CPU time (the
report it prints) is not modelled.
"""

from __future__ import annotations

from typing import Callable, Iterator, Sequence

from attrs import frozen

from actors.cpu.work import Sleep, Step
from actors.kernel.memory import MM
from actors.kernel.oom_reaper import OomReaper
from actors.kernel.process import Process

#: OOM_SCORE_ADJ_MIN: a task the OOM killer never chooses
OOM_SCORE_ADJ_MIN = -1000
#: the reason the kill log gives for the OOM killer's kills
OOM_KILL_REASON = "oom_kill"


class OutOfMemory(RuntimeError):
    """Nothing left that the OOM killer may choose: the kernel would panic or kill what the model cannot."""


def pgtables_pages(mm: MM, ptes_per_table: int) -> int:
    """mm_pgtables_bytes() / PAGE_SIZE, last level only: a PTE page per ``ptes_per_table`` (PTRS_PER_PTE, the
    kernel profile's ``exit.ptes_per_table``) resident or swapped pages."""
    return -(-(mm.anon + mm.file + mm.swap) // ptes_per_table)


def oom_badness(mm: MM, adj: int, totalpages: int, ptes_per_table: int) -> int | None:
    """oom_badness(): resident pages + swap entries + page tables, plus ``adj`` thousandths of
    ``totalpages`` (RAM + swap); None for a task it never chooses (oom_score_adj -1000)."""
    if adj == OOM_SCORE_ADJ_MIN:
        return None
    return mm.anon + mm.file + mm.swap + pgtables_pages(mm, ptes_per_table) + adj * (totalpages // 1000)


@frozen
class OomKill:
    """One decision of the OOM killer: its victim, the badness it had, whether it was already dying."""

    victim: Process
    points: int
    already_dying: bool


def select_bad_process(candidates: Sequence[Process], totalpages: int, ptes_per_table: int) -> OomKill | None:
    """select_bad_process() over ``candidates`` in task-list order: the highest badness (a later task wins a
    tie, as ``points < chosen_points`` skips only a lower one); a task whose exit has detached its mm has none."""
    chosen: OomKill | None = None
    for proc in candidates:
        zap = proc.zap
        if zap is not None and (zap.mm_detached or zap.freed):
            continue
        points = oom_badness(proc.mm, proc.adj, totalpages, ptes_per_table)
        if points is None or (chosen is not None and points < chosen.points):
            continue
        chosen = OomKill(proc, points, proc.killed_at is not None)
    return chosen


class OomKiller:
    """mm/oom_kill.c's out_of_memory() for one device.

    ``candidates()`` lists the killable processes in task-list (creation)
    order; ``reaper`` is the oom_reaper serving the kernel's list;
    ``on_kill(victim, reason, min_adj, via)`` reports a kill as lmkd's are
    reported. ``retry_ns`` is a jiffy; ``reaper_delay_ns`` is
    OOM_REAPER_DELAY; ``ptes_per_table`` is PTRS_PER_PTE.
    """

    def __init__(self, candidates: Callable[[], Sequence[Process]], reaper: OomReaper,
                 totalpages: int, *, ptes_per_table: int, retry_ns: int, reaper_delay_ns: int,
                 on_kill: Callable[[Process, str, int, str], None] | None = None) -> None:
        if retry_ns <= 0 or reaper_delay_ns < 0:
            raise ValueError("the OOM killer needs a retry interval > 0 and a reaper delay >= 0")
        self.candidates = candidates
        self.reaper = reaper
        self.totalpages = totalpages
        self.ptes_per_table = ptes_per_table
        self.retry_ns = retry_ns
        self.reaper_delay_ns = reaper_delay_ns
        self.on_kill = on_kill
        #: the processes marked as OOM victims (tsk_is_oom_victim), in the order they were
        self.victims: list[Process] = []

    def pending(self) -> Process | None:
        """The first OOM victim whose memory is not yet back (its mm not MMF_OOM_SKIP): it blocks another kill."""
        for victim in self.victims:
            zap = victim.zap  # None until the SIGKILL is delivered, at the instant it was sent
            if zap is None or not (zap.freed or victim.exited_at is not None):
                return victim
        return None

    def out_of_memory(self, mm: MM, who: str) -> Iterator[Step]:
        """The OOM path of thread ``who`` allocating for ``mm``: kill if nobody is pending, then wait a jiffy."""
        if self.pending() is None:
            kill = select_bad_process(self.candidates(), self.totalpages, self.ptes_per_table)
            if kill is None:
                raise OutOfMemory(f"out of memory allocating for {mm.name}: no process left that the OOM killer "
                                  "may choose (the system and the camera are not killable in the model)")
            victim = kill.victim
            victim.log("oom_kill", pid=victim.pid, adj=victim.adj, points=kill.points,
                       already_dying=kill.already_dying, allocating=who)
            if not kill.already_dying:
                if self.on_kill is not None:
                    self.on_kill(victim, OOM_KILL_REASON, OOM_SCORE_ADJ_MIN + 1, who)
                victim.signal()  # delivered at this instant, once the allocating thread's step is done
            self.victims.append(victim)
            self.reaper.queue(victim, self.reaper_delay_ns)
        yield Sleep(self.retry_ns)
