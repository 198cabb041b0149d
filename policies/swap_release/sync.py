"""The kernel as it is: the zapper frees each swap entry in free_swap_and_cache_nr."""

from __future__ import annotations

from actors.kernel.exit_path import SynchronousRelease
from actors.kernel.kernel import Kernel
from actors.runtime.actor import Runtime
from policies.swap_release import SWAP_RELEASE


@SWAP_RELEASE.register("sync")
class Sync(SynchronousRelease):
    def __init__(self, params: None = None) -> None:
        pass

    def install(self, runtime: Runtime, kernel: Kernel) -> None:
        """Nothing runs beside the zappers."""
