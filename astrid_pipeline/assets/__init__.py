"""Dagster assets, one module per stage. Assets are thin: science lives in astrid_pipeline.science."""
