"""Signals and dead workers at work: what `run`, `compare` and `sweep` leave on disk and in the process table."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import HOST_PROBLEM, ROOT, zram_state

CONFIG = str(ROOT / "configs" / "camera_launch.toml")
LONG = ["--set", "scenario.duration_s=2.5"]
real_host = pytest.mark.skipif(HOST_PROBLEM is not None, reason=f"no real-kernel harness here: {HOST_PROBLEM}")


def start(*args: str) -> subprocess.Popen[str]:
    # a command started in the background by a non-interactive shell inherits SIGINT ignored; give it the
    # default dispositions a user's terminal gives
    return subprocess.Popen([sys.executable, "-m", "exitstorm", *args], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def children(pid: int) -> list[int]:
    """The live processes whose parent is ``pid``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            fields = stat[stat.rindex(")") + 2:].split()
            if int(fields[1]) == pid and fields[0] != "Z":
                found.append(int(entry.name))
    return found


def mentioning(text: str) -> list[int]:
    """Live processes whose command line mentions ``text`` (workers are forks: they carry the parent's)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().decode(errors="replace")
                state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue
            if text in cmdline and state != "Z":
                found.append(int(entry.name))
    return found


def wait_for(predicate, timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def listing(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.mark.parametrize("signum, status", [(signal.SIGTERM, 143), (signal.SIGHUP, 129), (signal.SIGINT, 130)])
def test_a_run_ended_by_a_signal_leaves_nothing_and_says_how_it_ended(tmp_path: Path, signum: int,
                                                                      status: int) -> None:
    out = tmp_path / "r"
    proc = start("run", CONFIG, "--out", str(out), "--set", "scenario.duration_s=30")
    assert wait_for(lambda: any(p.name.endswith(".tmp") for p in tmp_path.iterdir()))
    proc.send_signal(signum)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == status and "Traceback" not in stderr, stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("command", [["compare", CONFIG, "--seeds", "8"],
                                     ["sweep", CONFIG, "--grid", "apps.count=12,20", "--seeds", "4"]])
def test_sigterm_ends_compare_and_sweep_like_ctrl_c_with_status_143_and_no_worker_left(
        tmp_path: Path, command: list[str]) -> None:
    out = tmp_path / "o"
    proc = start(*command, "--out", str(out), "--workers", "2", *LONG)
    assert wait_for(lambda: len(children(proc.pid)) >= 2)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 143 and "Traceback" not in stderr, stderr
    assert mentioning(str(out)) == []
    if command[0] == "sweep":  # the finished runs are kept for --resume
        assert "--resume" in stdout and listing(tmp_path)[0] == "o.partial"
        assert not list((tmp_path / "o.partial").glob("runs/*/.*.tmp"))
    else:
        assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("command", [["compare", CONFIG, "--seeds", "8"],
                                     ["sweep", CONFIG, "--grid", "apps.count=12,20", "--seeds", "4"]])
def test_a_killed_parent_takes_its_workers_with_it(tmp_path: Path, command: list[str]) -> None:
    out = tmp_path / "o"
    proc = start(*command, "--out", str(out), "--workers", "2", *LONG)
    assert wait_for(lambda: len(children(proc.pid)) >= 2)
    workers = children(proc.pid)
    proc.kill()
    proc.communicate(timeout=60)
    assert wait_for(lambda: not any(Path(f"/proc/{w}").exists() and w in mentioning(str(out)) for w in workers),
                    timeout=10)
    before = listing(tmp_path)
    time.sleep(1.0)
    assert listing(tmp_path) == before  # nobody goes on writing
    if command[0] == "sweep":  # and the sweep resumes at once
        again = subprocess.run([sys.executable, "-m", "exitstorm", *command, "--out", str(out), "--workers",
                                "2", *LONG, "--resume"], cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert again.returncode == 0, again.stderr


def test_a_dead_worker_is_one_line_naming_its_run(tmp_path: Path) -> None:
    out = tmp_path / "o"
    proc = start("compare", CONFIG, "--seeds", "8", "--out", str(out), "--workers", "2", *LONG)
    # both workers up and runs under way
    assert wait_for(lambda: len(children(proc.pid)) >= 2 and list(tmp_path.glob(".o.*.tmp/runs/*")))
    os.kill(children(proc.pid)[0], signal.SIGKILL)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 1 and stderr.count("\n") == 1, stderr
    assert "a worker process died" in stderr and "seed" in stderr and "among the runs under way" in stderr, stderr
    assert list(tmp_path.iterdir()) == [] and mentioning(str(out)) == []


def test_what_a_killed_run_left_is_reported_and_removed_with_force(tmp_path: Path) -> None:
    out = tmp_path / "r"
    left = tmp_path / ".r.x1y2.tmp"
    (left / "histograms").mkdir(parents=True)
    proc = subprocess.run([sys.executable, "-m", "exitstorm", "run", CONFIG, "--out", str(out), *LONG],
                          cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert "a killed run left .r.x1y2.tmp beside it (use --force to remove)" in proc.stderr
    assert listing(tmp_path) == [".r.x1y2.tmp", ".r.x1y2.tmp/histograms"]
    proc = subprocess.run([sys.executable, "-m", "exitstorm", "run", CONFIG, "--out", str(out), "--force",
                           *LONG], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["r"]


@pytest.mark.parametrize("where, expected", [
    (lambda tmp: tmp / "file" / "out", "file is not a directory"),
    (lambda tmp: tmp / ("x" * 300), "File name too long"),
])
def test_filesystem_failures_are_one_line(tmp_path: Path, where, expected: str) -> None:
    (tmp_path / "file").write_text("a file, not a folder")
    proc = subprocess.run([sys.executable, "-m", "exitstorm", "run", CONFIG, "--out", str(where(tmp_path)),
                           *LONG], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and expected in proc.stderr, proc.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["file"]


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small or read-only tmpfs needs root")
@pytest.mark.parametrize("options, expected", [("size=64k", "No space left on device"),
                                               ("ro", "Read-only file system")])
def test_a_full_or_read_only_filesystem_is_one_line_and_leaves_nothing(tmp_path: Path, options: str,
                                                                      expected: str) -> None:
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(mnt)], check=True)
    try:
        proc = subprocess.run([sys.executable, "-m", "exitstorm", "run", CONFIG, "--out", str(mnt / "r"),
                               *LONG], cwd=ROOT, capture_output=True, text=True)
        assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and expected in proc.stderr, proc.stderr
        assert list(mnt.iterdir()) == []
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


def test_corrupt_results_are_one_line_for_report_logs_and_hist(tmp_path: Path) -> None:
    run = tmp_path / "r"
    made = subprocess.run([sys.executable, "-m", "exitstorm", "run", str(ROOT / "configs" / "cpu_contention.toml"),
                           "--set", "scenario.duration_s=0.3", "--out", str(run)], cwd=ROOT, capture_output=True)
    assert made.returncode == 0
    hlog = sorted((run / "histograms").glob("*.hlog"))[0]
    cases = [
        (run / "summary.json", '{"cut short', ["report", str(run)],
         "summary.json: corrupt, not the JSON exitstorm writes"),
        (run / "events.jsonl", '{"t_ns": 1, oops\n', ["logs", str(run)], "events.jsonl:1: corrupt"),
        (run / "events.jsonl", '[1, 2]\n', ["logs", str(run)], "events.jsonl:1: corrupt, expected an object"),
        (hlog, "not a histogram log\n", ["hist", str(run)], "corrupt HdrHistogram log"),
    ]
    for path, text, args, expected in cases:
        good = path.read_bytes()
        path.write_text(text)
        proc = subprocess.run([sys.executable, "-m", "exitstorm", *args], cwd=ROOT, capture_output=True, text=True)
        assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and expected in proc.stderr, proc.stderr
        path.write_bytes(good)
    assert not (run / "report").exists()


JOURNAL = Path("/run/exitstorm/zram0.json")


@real_host
@pytest.mark.parametrize("signum, status, when", [
    (signal.SIGTERM, 143, "journal"), (signal.SIGINT, 130, "journal"), (signal.SIGHUP, 129, "journal"),
    (signal.SIGINT, 130, 0.1), (signal.SIGTERM, 143, 0.3), (signal.SIGINT, 130, 0.8), (signal.SIGTERM, 143, 1.5)])
def test_calibrate_ended_by_a_signal_puts_zram_back_and_writes_no_profile(tmp_path: Path, signum: int,
                                                                          status: int, when: str | float) -> None:
    """At the first change to the host (the journal appears) or at a moment of the set-up or measurement."""
    before = zram_state()
    out = tmp_path / "p.toml"
    proc = start("calibrate", "--quick", "--out", str(out))
    if when == "journal":
        assert wait_for(JOURNAL.exists, timeout=30)
    else:
        time.sleep(float(when))
    proc.send_signal(signum)
    _, stderr = proc.communicate(timeout=60)
    said = f"status {proc.returncode}, stderr: {stderr!r}"
    assert "Traceback" not in stderr, said
    assert zram_state() == before and not JOURNAL.exists(), (zram_state(), before, said)
    if proc.returncode != 0:  # (a late signal can find the quick calibration done)
        # (one before the interpreter runs exitstorm's first line ends it as the default action does: the
        # status a shell shows is the same)
        assert proc.returncode in (status, -signum) and list(tmp_path.iterdir()) == [], said


@real_host
def test_after_a_killed_calibrate_the_next_one_undoes_what_it_left(tmp_path: Path) -> None:
    before = zram_state()
    proc = start("calibrate", "--quick", "--out", str(tmp_path / "killed.toml"))
    assert wait_for(lambda: JOURNAL.exists() and zram_state()[0], timeout=30)  # swap is on
    proc.kill()
    proc.communicate(timeout=30)
    assert zram_state() != before and JOURNAL.exists()
    again = start("calibrate", "--quick", "--out", str(tmp_path / "next.toml"))
    _, stderr = again.communicate(timeout=120)
    assert again.returncode == 0, stderr
    assert stderr.count("putting it back as it was") == 1 and zram_state() == before and not JOURNAL.exists()


SWALLOWED = """
import os, signal, sys
from pathlib import Path
from exitstorm import lifecycle
from exitstorm.outputs import results
lifecycle.terminate_like_interrupt()
# a signal whose KeyboardInterrupt lands in an at-fork callback: Python prints "Exception ignored" and goes on
os.register_at_fork(after_in_parent=lambda: signal.raise_signal(signal.SIGHUP))
pid = os.fork()
if pid == 0:
    os._exit(0)
os.waitpid(pid, 0)
try:
    results.write_whole(Path(sys.argv[1]), "a profile written after the interrupt\\n")
except KeyboardInterrupt:
    sys.exit(lifecycle.interrupted_status())
sys.exit(0)
"""


def test_an_interrupt_python_could_not_raise_still_stops_what_would_be_published(tmp_path: Path) -> None:
    """calibrate once wrote its profile with status 0 after a SIGHUP whose KeyboardInterrupt fell in an at-fork
    callback of logging: the signal is recorded, and nothing is published after it."""
    out = tmp_path / "profile.toml"
    proc = subprocess.run([sys.executable, "-c", SWALLOWED, str(out)], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)
    assert "Exception ignored" in proc.stderr  # the interrupt was lost where it was raised ...
    assert proc.returncode == 128 + signal.SIGHUP and not out.exists()  # ... and still ended it
