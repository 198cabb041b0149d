"""Performance benchmarks: wall-clock ratios, events per second, peak memory."""
