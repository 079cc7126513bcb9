"""Dagster resources: one for each thing outside the process (archives, storage)."""
