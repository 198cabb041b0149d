"""The kill axis: how lmkd's threads kill a victim (docs/design.md, "policy axes").

A remedy is a :class:`actors.android.lmkd.KillMethod`: the work steps of the thread
that kills, which deliver the SIGKILL. ``make(params, signal_ns=...)``
builds it; ``signal_ns`` is the cost of pidfd_send_signal() from lmkd's
costs.
"""

from __future__ import annotations

from policies.registry import Axis, discover

KILL = Axis("kill", default="sigkill")

discover(__name__, __path__)
