"""Swappable remedies, one package per axis (docs/design.md §7), each remedy one module in it.

``policies/kill/``, ``policies/reap/`` and ``policies/swap_release/`` each
hold an :class:`~policies.registry.Axis` that its modules register with;
the config selects a remedy by name and reads its parameters from
``[policies.<table>]``. The model calls a remedy through its axis's
Protocol and never imports a policy.
"""

from __future__ import annotations

from policies.kill import KILL
from policies.reap import REAP
from policies.registry import Axis
from policies.swap_release import SWAP_RELEASE

#: the axes, in the order a world installs their remedies
AXES: tuple[Axis, ...] = (SWAP_RELEASE, REAP, KILL)
