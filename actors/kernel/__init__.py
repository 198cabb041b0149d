"""The kernel's memory management and the tasks it runs: memory and PSI, the exit path and reaping, processes,
kswapd, the oom_reaper, workqueues, PSI triggers, and the kernel profiles their costs come from."""
