"""ohana's 3D U-Net done right: temporal patches, training, tiled inference, the hybrid with the rules, evaluation.

- :mod:`.features`: the network inputs (noise-normalised group differences
  and saturation flags) from a reference-corrected block; numpy only.
- :mod:`.patches`: training sets of temporal patches (ohana's ``patch_size``
  and ``overlap`` keys) simulated from a creator config, one HDF5 file per
  index so job arrays (``--start_index`` / ``--end_index``) write apart.
- :mod:`.model`: the 3D U-Net (torch).
- :mod:`.train`: seeded training, model selection by per-class IoU, history
  and plots; ohana's ``best_model_unet3d.pth`` / ``training_history_unet3d.json``.
- :mod:`.infer`: checkpoint loading (``weights_only=True``) and tiled
  full-frame inference with bounded memory; GPU when present.
- :mod:`.hybrid`: the documented merge of U-Net and rules.
- :mod:`.evaluate`: per-class recall, precision and IoU per S/N bin for the
  rules, the U-Net, the hybrid and stcal on held-out seeds of each preset.
- :mod:`.ship`: rebuilds the shipped weights (``weights/``).

Importing this package does not import torch; the modules that need it
import it inside their functions (or, :mod:`.model`, are imported lazily).
Nothing here imports Dagster: every entry point takes a configuration
dataclass, explicit input paths and explicit output paths, and returns a
result object with a ``metadata`` dict.
"""

from pathlib import Path as _Path

#: the shipped weights (made by ``python -m astrid_pipeline.ml.ramps.ship``; see weights/README.md)
SHIPPED_WEIGHTS = _Path(__file__).resolve().parent / "weights" / "ramp_unet3d_h8.pt"
