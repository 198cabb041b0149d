"""The ``exitstorm`` command (``python -m exitstorm``, or the ``exitstorm`` script).

Importing the lab takes a few hundred milliseconds, before the command's
own handlers are installed (:func:`exitstorm.lifecycle.terminate_like_interrupt`).
A SIGINT, SIGTERM or SIGHUP in that time ends the command quietly with
128 + the signal: nothing has been read, written or touched yet.
"""

from __future__ import annotations

import os
import signal
import sys
from types import FrameType


def _starting(signum: int, _frame: FrameType | None) -> None:
    os._exit(128 + signum)


def run() -> int:
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(signum) is not signal.SIG_IGN:  # a background job keeps SIGINT ignored
            signal.signal(signum, _starting)
    from exitstorm.cli import main

    return main()


if __name__ == "__main__":
    sys.exit(run())
