"""What a run leaves: results directories (written atomically, one writer at a time), HDR histograms, figures
and statistics, the event log reader, the report."""
