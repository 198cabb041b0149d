"""Results directories and files, written atomically, by one writer at a time, never silently overwritten.

Everything is written into a temporary sibling, which is renamed into place
only once it is complete; a failed or interrupted run leaves nothing behind
under the requested name. While a directory is written its writer holds a
lock beside it, so a second writer is refused; ``--force`` replaces only a
directory that exitstorm wrote (it carries a marker file).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

from exitstorm.lifecycle import raise_if_interrupted
from exitstorm.outputs.pidlock import Held, pid_lock
from exitstorm.schema import ConfigError


#: a name that becomes a file or directory name under a results directory: no separator, no leading dot
SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+=-]{0,99}")
#: what SAFE_NAME admits, for error messages
SAFE_NAME_RULE = "a plain file name (1-100 of A-Z a-z 0-9 . _ + = -, starting with a letter or digit)"


def safe_name(name: str) -> bool:
    """Can ``name`` become one path component under a results directory, and nothing else?"""
    return isinstance(name, str) and SAFE_NAME.fullmatch(name) is not None


#: the file in every results directory exitstorm writes: what ``--force`` may replace
MARKER = ".exitstorm-results"


def is_results(path: Path) -> bool:
    """Did exitstorm write the directory ``path``?"""
    return path.is_dir() and (path / MARKER).is_file()


def check_target(final: Path, force: bool) -> None:
    """Refuse early (before any work) when ``final`` exists and ``force`` is off, or is not exitstorm's."""
    if not (final.exists() or final.is_symlink()):
        return
    if not force:
        raise ConfigError(f"{final}: results directory already exists (use --force to replace it)")
    if final.is_symlink() or not final.is_dir():
        raise ConfigError(f"{final}: exists and is not a directory; --force replaces only exitstorm's results")
    if not is_results(final):
        raise ConfigError(f"{final}: exists and is not exitstorm's results (no {MARKER} in it); --force will not "
                          f"delete it")


@contextlib.contextmanager
def writer_lock(final: Path) -> Iterator[None]:
    """Hold the lock of results directory ``final`` (a file ``.NAME.lock`` beside it with the holder's pid):
    a second writer is refused in one line naming the holder. The lock dies with its process (flock), and
    its file is removed when it is released."""
    for ancestor in reversed(final.parents):
        if ancestor.exists() and not ancestor.is_dir():
            raise ConfigError(f"{final}: {ancestor} is not a directory")
    final.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as held:
        try:
            held.enter_context(pid_lock(final.parent / f".{final.name}.lock"))
        except Held as other:
            raise ConfigError(f"{final}: another exitstorm (pid {other.holder}) is writing it") from None
        yield


@contextlib.contextmanager
def atomic_directory(final: Path, force: bool) -> Iterator[Path]:
    """Yield a temporary directory that becomes ``final`` when the block succeeds (under ``final``'s lock)."""
    with writer_lock(final):
        check_target(final, force)  # under the lock: no other writer can be at it
        clear_leftovers(final, force)
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
        try:
            yield tmp
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        publish(tmp, final, force)


def leftovers(final: Path) -> list[Path]:
    """Temporary siblings of ``final`` that a killed writer left (a live one holds the lock)."""
    return sorted(p for pattern in (f".{final.name}.*.tmp", f".{final.name}.*.old")
                  for p in final.parent.glob(pattern))


def clear_leftovers(final: Path, force: bool) -> None:
    """Under ``final``'s lock: remove what a killed writer left with ``force``, else refuse naming it."""
    found = leftovers(final)
    if found and not force:
        raise ConfigError(f"{final}: a killed run left {', '.join(p.name for p in found)} beside it (use --force "
                          f"to remove)")
    for path in found:
        shutil.rmtree(path, ignore_errors=True)


def publish(tmp: Path, final: Path, force: bool) -> None:
    """Mark the complete directory ``tmp`` (a sibling of ``final``) as exitstorm's results and rename it to
    ``final``, replacing what is there only as :func:`check_target` allows."""
    raise_if_interrupted()
    (tmp / MARKER).write_text("exitstorm results: --force may replace this directory\n")
    check_target(final, force)
    if final.exists():
        trash = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".old", dir=final.parent))
        os.replace(final, trash / final.name)
        os.replace(tmp, final)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.replace(tmp, final)


def write_whole(path: Path, text: str) -> None:
    """Write ``path`` whole: a reader sees the old file or the new one (temp file + rename)."""
    raise_if_interrupted()
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def run_dir(root: Path, name: str, seed: int) -> Path:
    """Where a comparison's or a sweep's run of variant (or point) ``name`` on ``seed`` is written: always
    inside ``root`` (a name that is not a plain file name is refused here too, whoever checked it before)."""
    if not safe_name(name):
        raise ConfigError(f"{name!r}: expected {SAFE_NAME_RULE} for a run's directory")
    return root / "runs" / name / f"seed{seed}"


def read_json(path: Path) -> Any:
    """A JSON file of a results directory, read whole; one line naming it when it is missing or corrupt."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: missing (not a complete exitstorm results directory)") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: corrupt, not the JSON exitstorm writes ({exc})") from None


def comparison_runs(cmp_dir: Path) -> dict[str, list[Path]]:
    """A comparison directory's runs, per variant in compare.json's order, by seed."""
    variants = read_json(cmp_dir / "compare.json")["variants"]
    return {name: sorted((cmp_dir / "runs" / name).glob("seed*")) for name in variants}

