"""The sky branch after the triplets: real/bogus scores per candidate, and alert packets.

- :func:`scores` runs the real/bogus CNN (:mod:`astrid_pipeline.ml.realbogus`, the shipped weights unless
  ``ScoreSettings.model`` names another checkpoint) on the region's triplets and writes the
  ``candidate_scores`` catalog (one row per candidate, keyed by ``candidate_id``; the candidate catalog is
  not rewritten: one writer per product) and the region's ds9 region file (own folder, not inside the
  Parquet dataset).
- :func:`alerts` joins the candidates with their scores and writes the region's alert packets: one Avro
  file in the public ZTF v4.02 alert schema (:mod:`astrid_pipeline.alerts`), cutouts as gzipped FITS
  stamps with their WCS.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from astrid_pipeline.layout import DataLayout
    from astrid_pipeline.sky.products import StepResult


@dataclass
class ScoreSettings:
    """Real/bogus scoring of the candidates."""

    model: str = field(default="", metadata={
        "description": "real/bogus checkpoint to score with; empty = the shipped weights (a newly trained model "
                       "is used only when named here)"})
    tta: bool = field(default=False, metadata={
        "description": "average the score over the 8 rotations/flips of each triplet (on the unseen-seed test set: "
                       "the same FPR at 95 % TPR, 0.012, at 6x the time: 22.5 against 3.9 s per 1000)"})
    min_scored_fraction: float = field(default=1.0, metadata={
        "description": "score_distribution check: least fraction of candidates with a finite score"})
    max_real_fraction: float = field(default=0.9, metadata={
        "description": "score_distribution check: most fraction of a region's candidates called real (a higher "
                       "share means the inputs are not what the model was trained on)"})


def scores(layout: DataLayout, region: str, settings: ScoreSettings | None = None) -> StepResult:
    """Score every candidate of ``region`` and write ``candidate_scores`` and the ds9 region file."""
    from astrid_pipeline.io.parquet_io import read_partitioned, write_partitioned
    from astrid_pipeline.io.regions_ds9 import write_ds9_regions
    from astrid_pipeline.ml.realbogus.score import (
        candidate_scores,
        candidate_scores_schema,
        load_realbogus,
        score_summary,
    )
    from astrid_pipeline.sky.products import StepResult, read_triplets

    settings = settings or ScoreSettings()
    cands = read_partitioned(layout.root, "candidates", {"region": region})
    trip = read_triplets(layout, region, cands["candidate_id"])
    model, payload = load_realbogus(settings.model or None)
    types = tuple(payload.get("types") or ())
    table = candidate_scores(trip, cands, model=(model, payload), region=region, tta=settings.tta)
    payload_version = _version(payload)
    table["rb_version"] = payload_version
    schema = candidate_scores_schema(types) if types else None
    out = write_partitioned(table, layout.root, "candidate_scores", {"region": region}, schema)
    joined = cands.merge(table[["candidate_id", "rb"]], on="candidate_id", how="left")
    reg = write_ds9_regions(joined, layout.ds9_regions(region), title=f"AstrID candidates of region {region}")
    threshold = float(payload.get("threshold", 0.5))
    summary = score_summary(table["rb"].to_numpy(float), threshold)
    meta = {**summary, "rb_version": payload_version, "model_path": payload.get("path", ""),
            "n_candidates": int(len(cands))}
    if len(table):
        meta["type_counts"] = {str(k): int(v) for k, v in table.loc[table["real"], "rb_type"].value_counts().items()}
    return StepResult({"candidate_scores": out, "ds9_regions": reg}, meta)


def _version(payload: dict) -> str:
    from pathlib import Path

    from astrid_pipeline.ml.weights_path import SHA_PREFIX, file_sha256

    p = Path(str(payload.get("path", "")))
    return f"{p.stem}@{file_sha256(p)[:SHA_PREFIX]}" if p.is_file() else "in-memory model"


def alerts(layout: DataLayout, region: str, settings=None) -> StepResult:
    """Write the region's alert packets (ZTF v4.02 Avro) from its candidates, scores and images."""
    from astrid_pipeline.alerts.packets import AlertSettings, alert_images_from_files, write_alerts
    from astrid_pipeline.io.parquet_io import read_partitioned
    from astrid_pipeline.sky.products import StepResult

    settings = settings or AlertSettings()
    cands = read_partitioned(layout.root, "candidates", {"region": region})
    sc = read_partitioned(layout.root, "candidate_scores", {"region": region})
    joined = cands.merge(sc[["candidate_id", "rb", "candid"]], on="candidate_id", how="left")
    version = str(sc["rb_version"].iloc[0]) if len(sc) else ""
    images = alert_images_from_files(layout.normalized_image(region, "science"),
                                     layout.normalized_image(region, "reference"),
                                     layout.difference(region, "zogy"),
                                     reference_raw=layout.raw_image(region, "reference"))
    meta = write_alerts(joined, images, layout.alerts(region), region=region, settings=settings,
                        rb_version=version)
    meta["n_expected"] = int((joined["flags"] == 0).sum()) if settings.only_clean else int(len(joined))
    path = meta.pop("path")
    return StepResult({"alert_packets": path}, meta)
