"""The CPU: the scheduler that runs threads' work programs on cores (FIFO and fair classes, locks, preemption),
the steps of a work program, and the slice timeline."""
