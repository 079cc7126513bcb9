"""Save and load CR model checkpoints: one ``.pt`` holding the state dict, the model spec and a format tag.

Loading uses ``torch.load(weights_only=True)``: only tensors and plain
Python values are read, never pickled code.
:func:`astrid_pipeline.ml.weights_path.file_sha256` names a checkpoint by
its bytes (the CRMDSHA header keyword holds its first ``SHA_PREFIX`` hex
digits).
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import CheckpointError
from .models import ModelSpec, build_model
from .weights_path import SHIPPED_WEIGHTS as SHIPPED
from .weights_path import WEIGHTS_DIR

FORMAT = "astrid-cr2d/1"


def save_checkpoint(path: str | os.PathLike, model, spec: ModelSpec, extra: dict | None = None) -> Path:
    import torch

    from astrid_pipeline.io.atomic import atomic_path

    payload = {"format": FORMAT, "spec": spec.as_dict(), "normalization": "asinh_mad",
               "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}}
    payload.update(extra or {})
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return Path(path)


def load_checkpoint(path: str | os.PathLike):
    """(model in eval mode, spec, payload) from a checkpoint; :class:`CheckpointError` if unusable.

    Without torch installed this is a :class:`CheckpointError` that says so,
    not a bare ``ModuleNotFoundError``.
    """
    p = Path(path)
    try:
        import torch
    except ImportError as exc:
        raise CheckpointError(p, f"cannot be loaded: torch is not installed ({exc}); install torch or use "
                                 "L.A.Cosmic (method=lacosmic)") from None
    if not p.is_file():
        raise CheckpointError(p, "no such checkpoint file (train one with the cr_model asset, or use LA-Cosmic)")
    try:
        payload = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the same problem for the user
        raise CheckpointError(p, f"cannot be read as a weights-only torch checkpoint ({type(exc).__name__}: {exc})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT or "state_dict" not in payload:
        raise CheckpointError(p, f"is not an AstrID 2-D CR checkpoint (expected format {FORMAT!r})")
    try:
        spec = ModelSpec.from_dict(payload["spec"])
        model = build_model(spec)
        model.load_state_dict(payload["state_dict"], strict=True)
    except (RuntimeError, TypeError, KeyError, ValueError) as exc:
        raise CheckpointError(p, f"does not fit its model spec {payload.get('spec')}: {str(exc)[:300]}") from None
    model.eval()
    return model, spec, payload
