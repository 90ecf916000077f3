"""Trained-network probes, experiments, comparisons, reports, plots and the CLI."""
