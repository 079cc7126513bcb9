"""Cosmic rays in single images: training-data simulation, metrics, L.A.Cosmic, masks.

The networks themselves live in :mod:`astrid_pipeline.ml` (torch is imported
only inside functions).
"""
