"""Background load: threads that keep cores busy, system threads that migrate tasks between cgroups."""
