"""The swap-release axis: who frees a dying mm's swap entries, and when (docs/design.md §7).

A remedy is an :class:`actors.kernel.exit_path.SwapRelease`: the steps of zapping
swap PTEs, and what happens when a zapper is done with an mm. ``make(params)``
builds it; ``install(runtime, kernel)`` adds what it runs on (a workqueue).
``sync``, the kernel as it is, is the model's own
:class:`actors.kernel.exit_path.SynchronousRelease`.
"""

from __future__ import annotations

from policies.registry import Axis, discover

SWAP_RELEASE = Axis("swap_release", default="sync")

discover(__name__, __path__)
