"""Torch models: 2-D cosmic-ray segmentation (losses, training, tiled inference, the family trained
side by side by :mod:`astrid_pipeline.science.cosmic_rays.family`) and the real/bogus triplet classifier (:mod:`.realbogus`).

Importing this package does not import torch: each module imports it inside
its functions or is itself imported lazily (``from astrid_pipeline.ml import
models`` pulls torch in), so loading the Dagster definitions stays fast.
"""
