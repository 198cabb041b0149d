"""The lab: configs, world assembly, experiment runs, outputs and the command line."""
