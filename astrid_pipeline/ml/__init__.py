"""Torch models for 2-D cosmic-ray segmentation, their losses, training and tiled inference.

Importing this package does not import torch: each module imports it inside
its functions or is itself imported lazily (``from astrid_pipeline.ml import
models`` pulls torch in), so loading the Dagster definitions stays fast.
"""
