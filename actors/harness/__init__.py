"""A test harness's threads, as the real-kernel harness and published storm measurements run them: the kills,
the process_mrelease() threads, the pool poller."""
