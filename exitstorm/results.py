"""Results directories and files, written atomically and never silently overwritten.

Everything is written into a temporary sibling, which is renamed into place
only once it is complete; a failed or interrupted run leaves nothing behind
under the requested name.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from exitstorm.schema import ConfigError


#: a name that becomes a file or directory name under a results directory: no separator, no leading dot
SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+=-]{0,99}")
#: what SAFE_NAME admits, for error messages
SAFE_NAME_RULE = "a plain file name (1-100 of A-Z a-z 0-9 . _ + = -, starting with a letter or digit)"


def safe_name(name: str) -> bool:
    """Can ``name`` become one path component under a results directory, and nothing else?"""
    return isinstance(name, str) and SAFE_NAME.fullmatch(name) is not None


def check_target(final: Path, force: bool) -> None:
    """Refuse early (before any work) when ``final`` exists and ``force`` is off."""
    if final.exists() and not force:
        raise ConfigError(f"{final}: results directory already exists (use --force to replace it)")
    if final.exists() and not final.is_dir():
        raise ConfigError(f"{final}: exists and is not a directory")


@contextlib.contextmanager
def atomic_directory(final: Path, force: bool) -> Iterator[Path]:
    """Yield a temporary directory that becomes ``final`` when the block succeeds."""
    check_target(final, force)
    parent = final.parent
    parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=parent))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    publish(tmp, final)


def publish(tmp: Path, final: Path) -> None:
    """Rename the complete directory ``tmp`` (a sibling of ``final``) to ``final``, replacing it if it exists."""
    if final.exists():
        trash = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".old", dir=final.parent))
        os.replace(final, trash / final.name)
        os.replace(tmp, final)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.replace(tmp, final)


def write_whole(path: Path, text: str) -> None:
    """Write ``path`` whole: a reader sees the old file or the new one (temp file + rename)."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def run_dir(root: Path, name: str, seed: int) -> Path:
    """Where a comparison's or a sweep's run of variant (or point) ``name`` on ``seed`` is written: always
    inside ``root`` (a name that is not a plain file name is refused here too, whoever checked it before)."""
    if not safe_name(name):
        raise ConfigError(f"{name!r}: expected {SAFE_NAME_RULE} for a run's directory")
    return root / "runs" / name / f"seed{seed}"


def comparison_runs(cmp_dir: Path) -> dict[str, list[Path]]:
    """A comparison directory's runs, per variant in compare.json's order, by seed."""
    variants = json.loads((cmp_dir / "compare.json").read_text())["variants"]
    return {name: sorted((cmp_dir / "runs" / name).glob("seed*")) for name in variants}

