"""Products of ramp detection: HDF5 class mask + features, Parquet events, detections.json.

Every file is written atomically (temporary name, then rename), and only
after the detection has finished, so a failed run leaves no product behind.

- ``mask.h5``: ``/class_mask`` (0 background, 1 cosmic ray, 2 telegraph
  noise, 3 snowball), ``/features/*`` (per-pixel temporal features),
  ``/jumps`` (every flagged pixel-group) and ``/events``.
- ``catalogs/ramp_events/detector=<id>/exposure=<n>/part-0.parquet``: one row
  per event with ohana's fields; units in the field metadata.
- ``detections.json``: ohana's list of detections (``type``, ``centroid``
  as [row, col], ``first_frame``, ``mean_intensity``, ``max_intensity``,
  ``spatial_extent`` and the method's metrics).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pyarrow as pa

from astrid_pipeline.io.parquet_io import Column, make_schema
from astrid_pipeline.science.ramps.config import CLASS_CODES
from astrid_pipeline.science.ramps.detect import FEATURE_UNITS, DetectionResult

EVENTS_TABLE = "ramp_events"


def event_columns(unit: str) -> list[Column]:
    u = unit or "DN"
    return [
        Column("event_id", pa.int64(), "", "event number within the exposure"),
        Column("type", pa.string(), "", "cosmic_ray, telegraph_noise or snowball"),
        Column("centroid_x", pa.float64(), "pix", "column of the centroid (0-based, pixel centres at integers)"),
        Column("centroid_y", pa.float64(), "pix", "row of the centroid (0-based)"),
        Column("first_frame", pa.int64(), "group", "first group holding the event's charge (RTN: first switch)"),
        Column("mean_intensity", pa.float64(), u, "mean jump (RTN: amplitude) over the event's pixels"),
        Column("max_intensity", pa.float64(), u, "largest jump of the event"),
        Column("spatial_extent", pa.int64(), "pix", "number of pixels"),
        Column("radius", pa.float64(), "pix", "largest distance of a pixel from the centroid, plus half a pixel"),
        Column("step_amplitude", pa.float64(), u, "step of the brightest pixel (RTN: level difference)"),
        Column("snr", pa.float64(), "", "step over its noise (RTN: amplitude over per-read noise)"),
        Column("fit_quality", pa.float64(), "", "variance explained by the step model (RTN: R^2 of two levels over a line)"),
        Column("n_transitions", pa.int64(), "", "RTN state changes (0 for other events)"),
        Column("rtn_amplitude", pa.float64(), u, "RTN level difference"),
        Column("rtn_level_low", pa.float64(), u, "RTN low level at the ramp's mid-time"),
        Column("rtn_level_high", pa.float64(), u, "RTN high level at the ramp's mid-time"),
        Column("dwell_high", pa.float64(), "group", "mean RTN dwell time in the high state"),
        Column("dwell_low", pa.float64(), "group", "mean RTN dwell time in the low state"),
        Column("circularity", pa.float64(), "", "core pixels / pixels of the enclosing disk inside the image"),
        Column("core_radius", pa.float64(), "pix", "radius of a disk with the area of the (near-)saturated core"),
        Column("n_saturated", pa.int64(), "pix", "pixels whose jump ended in saturation"),
        Column("halo_fraction", pa.float64(), "", "fraction of the ring outside the core that jumped"),
        Column("halo_expansion", pa.float64(), "pix", "growth of the snowball's extent in the next groups"),
    ]


def events_table(result: DetectionResult):
    import pandas as pd

    return pd.DataFrame({c: result.events[c] for c in result.events})


def write_mask_hdf5(path, result: DetectionResult, attrs: dict | None = None) -> Path:
    from astrid_pipeline.io.hdf5_io import open_atomic_hdf5, set_attrs, write_dataset, write_table_group

    unit = result.unit or "DN"
    meta = {
        "class_codes": CLASS_CODES,
        "read_noise": result.read_noise,
        "read_noise_unit": unit,
        "gain": result.gain,
        "unit": unit,
        "n_groups": result.n_groups,
        "integration": result.integration,
        "source_layout": result.source_layout,
        "counts": result.counts(),
        **{k: v for k, v in result.meta.items()},
        **(attrs or {}),
    }
    with open_atomic_hdf5(path, step="ramp_detection", attrs=meta) as f:
        write_dataset(f, "class_mask", result.mask, unit="",
                      description="0 background, 1 cosmic ray, 2 telegraph noise, 3 snowball",
                      attrs={"codes": CLASS_CODES})
        g = f.create_group("features")
        for name, arr in result.features.items():
            write_dataset(g, name, arr, unit=FEATURE_UNITS.get(name, "").format(unit=unit))
        jumps = {k: result.jumps[k] for k in ("y", "x", "frame", "amp", "z", "event")}
        write_table_group(f, "jumps", jumps, units={"amp": unit, "frame": "group"})
        ev = {k: (v.astype(str) if k == "type" else v) for k, v in result.events.items()}
        write_table_group(f, "events", ev, units={c.name: c.unit for c in event_columns(unit) if c.unit})
        set_attrs(f["class_mask"], {"counts": result.counts()})
    return Path(path)


def write_events_parquet(result: DetectionResult, root, detector: str, exposure: str) -> Path:
    from astrid_pipeline.io.parquet_io import write_partitioned
    from astrid_pipeline.layout import safe_key

    schema = make_schema(event_columns(result.unit), {"table": EVENTS_TABLE, "class_codes": json.dumps(CLASS_CODES)})
    return write_partitioned(events_table(result), root, EVENTS_TABLE,
                             {"detector": safe_key(detector), "exposure": safe_key(exposure)}, schema)


def _clean(v):
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.floating, float)):
        v = float(v)
        return None if not math.isfinite(v) else round(v, 4)
    if isinstance(v, np.bool_):
        return bool(v)
    return v


def detections_list(result: DetectionResult) -> list[dict]:
    """ohana's ``detections.json`` entries (one dict per event)."""
    ev = result.events
    out = []
    for i in range(len(ev["type"])):
        t = ev["type"][i]
        d = {
            "type": t,
            "centroid": [_clean(ev["centroid_y"][i]), _clean(ev["centroid_x"][i])],
            "first_frame": _clean(ev["first_frame"][i]),
            "mean_intensity": _clean(ev["mean_intensity"][i]),
            "max_intensity": _clean(ev["max_intensity"][i]),
            "spatial_extent": _clean(ev["spatial_extent"][i]),
        }
        if t == "telegraph_noise":
            d["position"] = [int(round(ev["centroid_y"][i])), int(round(ev["centroid_x"][i]))]
            for k in ("n_transitions", "rtn_amplitude", "rtn_level_low", "rtn_level_high", "dwell_high",
                      "dwell_low", "fit_quality", "snr"):
                d[k] = _clean(ev[k][i])
        else:
            for k in ("step_amplitude", "snr", "fit_quality", "radius"):
                d[k] = _clean(ev[k][i])
            if t == "snowball":
                for k in ("core_radius", "circularity", "n_saturated", "halo_fraction", "halo_expansion"):
                    d[k] = _clean(ev[k][i])
        d["event_id"] = int(ev["event_id"][i])
        out.append(d)
    return out


def write_detections_json(path, result: DetectionResult) -> Path:
    from astrid_pipeline.io.atomic import atomic_write_text

    return atomic_write_text(path, json.dumps(detections_list(result), indent=1))


def preview_png(path, result: DetectionResult, title: str = "") -> Path:
    """Quick look: signal per group (left) and the class mask (right)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap

    from astrid_pipeline.io.atomic import atomic_path

    img = result.features["slope"]
    step = max(1, max(img.shape) // 512)
    img = img[::step, ::step]
    mask = result.mask
    # keep isolated anomalies visible when the preview is binned
    if step > 1:
        ny, nx = mask.shape
        m = mask[: ny - ny % step, : nx - nx % step].reshape(ny // step, step, nx // step, step)
        mask = m.max(axis=(1, 3))
    lo, hi = np.percentile(img, [1, 99])
    fig, ax = plt.subplots(1, 2, figsize=(9, 4.5), dpi=80)
    ax[0].imshow(img, origin="lower", cmap="gray", vmin=lo, vmax=hi)
    ax[0].set_title(f"signal per group ({result.unit})")
    cmap = ListedColormap(["#111111", "#ff4040", "#40c0ff", "#ffd000"])
    ax[1].imshow(mask, origin="lower", cmap=cmap, vmin=0, vmax=3, interpolation="nearest")
    c = result.counts()
    ax[1].set_title(f"CR {c['cosmic_ray']}  RTN {c['telegraph_noise']}  snowball {c['snowball']}")
    for a in ax:
        a.set_xticks([])
        a.set_yticks([])
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return Path(path)


def write_products(result: DetectionResult, layout, detector: str, exposure: str, attrs: dict | None = None,
                   preview: bool = True) -> dict:
    """Write every product of one (detector, exposure) under a :class:`DataLayout`; returns their paths."""
    d = layout.detector_dir(detector, exposure)
    paths = {
        "mask": write_mask_hdf5(d / "mask.h5", result, attrs),
        "events": write_events_parquet(result, layout.root, detector, exposure),
        "detections": write_detections_json(d / "detections.json", result),
    }
    if preview:
        paths["preview"] = preview_png(d / "preview.png", result, title=f"{detector} / {exposure}")
    return paths
