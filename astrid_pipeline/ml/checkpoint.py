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


def read_payload(path: str | os.PathLike, fmt: str, what: str, missing: str, keys=("state_dict",)) -> dict:
    """The dict of a weights-only torch checkpoint of format ``fmt``; :class:`CheckpointError` naming the file
    when it is missing (message ``missing``: what to do), unreadable or of another kind (``what``)."""
    import torch

    p = Path(path)
    if not p.is_file():
        raise CheckpointError(p, missing)
    try:
        payload = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the same problem for the user
        raise CheckpointError(p, f"cannot be read as a weights-only torch checkpoint ({type(exc).__name__}: {exc})") from None
    if not isinstance(payload, dict) or payload.get("format") != fmt or any(k not in payload for k in keys):
        raise CheckpointError(p, f"is not an AstrID {what} checkpoint (expected format {fmt!r})")
    return payload


def fill_weights(build, payload: dict, path: str | os.PathLike, described: str):
    """``build()`` (the network its payload describes) with the payload's state dict loaded strictly, in eval
    mode; a mismatch is a :class:`CheckpointError` saying it ``does not fit its {described}``."""
    try:
        model = build()
        model.load_state_dict(payload["state_dict"], strict=True)
    except (RuntimeError, TypeError, KeyError, ValueError) as exc:
        raise CheckpointError(Path(path), f"does not fit its {described}: {str(exc)[:300]}") from None
    return model.eval()


def load_checkpoint(path: str | os.PathLike):
    """(model in eval mode, spec, payload) from a checkpoint; :class:`CheckpointError` if unusable.

    Without torch installed this is a :class:`CheckpointError` that says so,
    not a bare ``ModuleNotFoundError``.
    """
    p = Path(path)
    try:
        import torch  # noqa: F401  (a missing torch is named here, not deep in a step)
    except ImportError as exc:
        raise CheckpointError(p, f"cannot be loaded: torch is not installed ({exc}); install torch or use "
                                 "L.A.Cosmic (method=lacosmic)") from None
    payload = read_payload(p, FORMAT, "2-D CR",
                           "no such checkpoint file (train one with the cr_model asset, or use LA-Cosmic)")
    model = fill_weights(lambda: build_model(ModelSpec.from_dict(payload["spec"])), payload, p,
                         f"model spec {payload.get('spec')}")
    return model, ModelSpec.from_dict(payload["spec"]), payload
