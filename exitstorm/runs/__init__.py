"""Running experiments: one run and its trace, a pool of workers, comparisons of variants, sweeps."""
