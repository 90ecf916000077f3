"""Datasets (placeholder; filled in by the data module)."""
