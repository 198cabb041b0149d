"""The harness's hold on the host's swap: set up, put back on every way out, and a killed run's leftovers
undone by the next start. On a fake device everywhere; on /dev/zram0 itself where this machine has it."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Iterator

import pytest

from exitstorm import lifecycle
from exitstorm.realkernel.zram import ZRAM0, HostError, ZramSwap
from tests.conftest import HOST_PROBLEM, ROOT, zram_state
from tests.fake_zram import FakeZram, SignallingFake, SignallingZram

SET_UP = ("set_comp_algorithm", "set_disksize", "mkswap", "swapon")
ENDING = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
real_host = pytest.mark.skipif(HOST_PROBLEM is not None, reason=f"no real-kernel harness here: {HOST_PROBLEM}")


@pytest.fixture
def commands_signals(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """SIGINT, SIGTERM and SIGHUP interrupt as they do in the command started from a terminal
    (exitstorm.lifecycle), undone afterwards. SIGINT starts from its default handler: a test run started as a
    background job inherits it ignored, and the command rightly leaves an ignored SIGINT ignored."""
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, *ENDING)}
    monkeypatch.setattr(lifecycle, "_received", [])
    signal.signal(signal.SIGINT, signal.default_int_handler)
    lifecycle.terminate_like_interrupt()
    yield
    for s, handler in previous.items():
        signal.signal(s, handler)


def swap(tmp_path: Path, device: FakeZram | None = None, **kwargs: object) -> ZramSwap:
    return ZramSwap(disksize_mb=256, device=device or FakeZram(tmp_path / "host"), journal_dir=tmp_path / "run",
                    **kwargs)  # type: ignore[arg-type]


def test_inside_it_is_swap_and_after_it_is_as_before(tmp_path: Path) -> None:
    device = FakeZram(tmp_path / "host")
    before = device.state()
    with swap(tmp_path, device) as s:
        assert device.state()[:3] == (True, 256 << 20, "lz4")
        entry = json.loads(s.journal.read_text())
        assert entry["before"] == {"disksize": 0, "comp_algorithm": "lzo-rle"}
        assert entry["changes"] == list(("comp_algorithm", "disksize", "mkswap", "swapon"))
        assert s.lock.exists()
    assert device.state() == before
    assert list((tmp_path / "run").iterdir()) == []  # no journal, no lock


@pytest.mark.usefixtures("commands_signals")
@pytest.mark.parametrize("signum", ENDING, ids=lambda s: signal.Signals(s).name)
@pytest.mark.parametrize("step", SET_UP)
def test_a_signal_at_any_step_of_the_set_up_puts_the_host_back(tmp_path: Path, step: str, signum: int) -> None:
    device = SignallingFake(tmp_path / "host", signal_at={step: signum})
    before = device.state()
    with pytest.raises(KeyboardInterrupt):
        with swap(tmp_path, device):
            pytest.fail("the measurement started after an interrupt")
    assert device.state() == before
    assert list((tmp_path / "run").iterdir()) == []
    assert lifecycle.interrupted_status() == 128 + signum


@pytest.mark.usefixtures("commands_signals")
@pytest.mark.parametrize("step", SET_UP)
def test_a_signal_another_thread_takes_is_held_off_as_well(tmp_path: Path, step: str) -> None:
    """A process-directed signal goes to any thread that does not block it (a sampler, a pool's thread):
    blocking it in the main thread alone would let the interrupt land inside a step."""
    done = threading.Event()
    other = threading.Thread(target=done.wait)
    other.start()
    try:
        for _ in range(5):  # the kernel picks the thread: try a few times
            device = SignallingFake(tmp_path / "host", signal_at={step: signal.SIGTERM})
            before = device.state()
            with pytest.raises(KeyboardInterrupt):
                with swap(tmp_path, device):
                    pytest.fail("the measurement started after SIGTERM")
            assert device.state() == before and list((tmp_path / "run").iterdir()) == []
    finally:
        done.set()
        other.join()


@pytest.mark.usefixtures("commands_signals")
@pytest.mark.parametrize("again", ("swapoff", "reset"))
def test_a_second_signal_while_putting_back_waits_until_it_is_done(tmp_path: Path, again: str) -> None:
    device = SignallingFake(tmp_path / "host", signal_at={"swapon": signal.SIGTERM, again: signal.SIGINT})
    before = device.state()
    with pytest.raises(KeyboardInterrupt):
        with swap(tmp_path, device):
            pass
    assert device.state() == before and not device.signal_at  # both signals came, both were held off
    assert lifecycle.interrupted_status() == 128 + signal.SIGTERM


@pytest.mark.usefixtures("commands_signals")
def test_a_signal_during_the_measurement_or_its_clean_up_is_never_a_success(tmp_path: Path) -> None:
    device = SignallingFake(tmp_path / "host", signal_at={"reset": signal.SIGHUP})
    before = device.state()
    with pytest.raises(KeyboardInterrupt):  # the body finished; the interrupt during clean-up still counts
        with swap(tmp_path, device):
            pass
    assert device.state() == before
    with pytest.raises(KeyboardInterrupt):
        with swap(tmp_path, device):
            signal.raise_signal(signal.SIGTERM)
    assert device.state() == before


@pytest.mark.parametrize("step", SET_UP)
def test_what_a_killed_run_left_is_undone_by_the_next_start(tmp_path: Path, step: str) -> None:
    host, run = tmp_path / "host", tmp_path / "run"
    before = FakeZram(host).state()
    child = subprocess.run([sys.executable, "-m", "tests.fake_zram", step, str(host), str(run)], cwd=ROOT,
                           capture_output=True, text=True, timeout=60)
    assert child.returncode == -signal.SIGKILL, child.stderr
    journal = json.loads((run / "zram0.json").read_text())
    assert journal["pid"] and journal["changes"][-1] == {"set_comp_algorithm": "comp_algorithm",
                                                         "set_disksize": "disksize"}.get(step, step)
    notes: list[str] = []
    device = FakeZram(host)
    with swap(tmp_path, device, note=notes.append):
        assert device.is_swap()  # undone, then set up afresh: not the killed run's swap adopted
        assert json.loads((run / "zram0.json").read_text())["pid"] != journal["pid"]
    assert device.state() == before
    assert len(notes) == 1 and f"killed (pid {journal['pid']})" in notes[0] and "putting it back" in notes[0]


def test_a_second_measurement_is_refused_while_one_holds_the_device(tmp_path: Path) -> None:
    with swap(tmp_path) as s:
        with pytest.raises(HostError, match=r"another exitstorm measurement \(pid \d+\) is using .*zram0"):
            with swap(tmp_path):
                pass
        assert s.device.is_swap()  # the refused one changed nothing


def test_a_device_in_another_use_is_left_alone(tmp_path: Path) -> None:
    device = FakeZram(tmp_path / "host")
    device.set_disksize(64 << 20)
    before = device.state()
    with pytest.raises(HostError, match="is set up .64 MB. but is not swap.*will not overwrite it"):
        with swap(tmp_path, device):
            pass
    assert device.state() == before


def test_swap_already_on_is_used_and_left_on(tmp_path: Path) -> None:
    device = FakeZram(tmp_path / "host")
    device.set_disksize(64 << 20)
    device.mkswap()
    device.swapon()
    before = device.state()
    with swap(tmp_path, device) as s:
        assert not s.journal.exists()  # nothing of the host's was changed, nothing to undo
    assert device.state() == before


def test_a_failed_step_is_one_line_and_undoes_the_ones_before(tmp_path: Path) -> None:
    device = FakeZram(tmp_path / "host")
    device.dev.chmod(0o444)  # mkswap of the fake writes the device: EACCES unless root
    device.mkswap = lambda: (_ for _ in ()).throw(  # type: ignore[method-assign]
        subprocess.CalledProcessError(1, ["mkswap"], stderr="mkswap: /dev/zram0: Device or resource busy\n"))
    before = device.state()
    with pytest.raises(HostError, match=r"^could not set up .*zram0 as swap: mkswap failed: .*busy$"):
        with swap(tmp_path, device):
            pass
    assert device.state() == before and not (tmp_path / "run" / "zram0.json").exists()


def test_an_unreadable_journal_is_one_line_and_nothing_is_touched(tmp_path: Path) -> None:
    device = FakeZram(tmp_path / "host")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "zram0.json").write_text("{ half a journal")
    before = device.state()
    with pytest.raises(HostError, match="unreadable journal of an earlier measurement.*by hand"):
        with swap(tmp_path, device):
            pass
    assert device.state() == before


@real_host
@pytest.mark.usefixtures("commands_signals")
@pytest.mark.parametrize("step", SET_UP)
def test_on_this_host_a_sigterm_at_any_step_of_the_set_up_puts_zram_back(tmp_path: Path, step: str) -> None:
    before = zram_state()
    with pytest.raises(KeyboardInterrupt):
        with ZramSwap(disksize_mb=256, device=SignallingZram(signal_at={step: signal.SIGTERM}),
                      journal_dir=tmp_path):
            pytest.fail("the measurement started after SIGTERM")
    assert zram_state() == before and list(tmp_path.iterdir()) == []


@real_host
def test_on_this_host_a_killed_run_leaves_a_journal_and_the_next_start_undoes_it(tmp_path: Path) -> None:
    before = zram_state()
    child = subprocess.run([sys.executable, "-m", "tests.fake_zram", "swapon", "real", str(tmp_path)], cwd=ROOT,
                           capture_output=True, text=True, timeout=60)
    assert child.returncode == -signal.SIGKILL, child.stderr
    try:
        assert ZRAM0.is_swap()  # what a killed run leaves: swap on, device sized
    finally:
        notes: list[str] = []
        with ZramSwap(disksize_mb=256, journal_dir=tmp_path, note=notes.append):
            pass
    assert zram_state() == before and len(notes) == 1 and "putting it back" in notes[0]
