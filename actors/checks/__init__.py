"""Checks of a run's accounting: conservation of CPU time and of memory."""
