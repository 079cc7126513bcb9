"""Products of ramp detection, written to explicit paths (no data layout here).

Every file is written atomically (temporary name, then rename), and only
after the detection has finished, so a failed run leaves no product behind.
:func:`write_products` writes into one output directory:

- ``mask.h5``: ``/class_mask`` (0 background, 1 cosmic ray, 2 telegraph
  noise, 3 snowball), ``/features/*`` (per-pixel temporal features),
  ``/jumps`` (every flagged pixel-group; ``event`` -1 = a lone marginal
  jump not catalogued, -2 = a switch of an RTN pixel), ``/rtn_switches`` and
  ``/events``.
- ``prediction_mask.npy``: the same class mask as ohana writes it (uint8,
  rows x cols, ohana's codes).
- ``detections.json``: ohana's list of detections: ``type``, ``centroid``
  and ``center_pixel`` ([row, col]), ``pixel_coords`` (every [row, col] of
  the event), ``first_frame``, ``mean_intensity``, ``max_intensity``,
  ``spatial_extent``, ``confidence``, ``step_fit_quality`` and the
  method's metrics, plus ours (``event_id``, ``snr``, ``confidence_source``).
- ``groupdq.fits`` (optional): the jump flags as JWST ``GROUPDQ`` /
  ``PIXELDQ`` extensions (:mod:`astrid_pipeline.science.ramps.jwst_dq`).
- ``preview.png`` (optional).

The Parquet event table (one row per event with ohana's fields, units in
the field metadata) goes to the explicit ``events_path`` the caller gives
(the pipeline puts it in its hive-partitioned catalog).
"""

from __future__ import annotations

import contextlib
import json
import math
from pathlib import Path

import numpy as np
import pyarrow as pa

from astrid_pipeline.io.parquet_io import Column, make_schema
from astrid_pipeline.science.ramps.config import CLASS_CODES
from astrid_pipeline.science.ramps.detect import FEATURE_UNITS, DetectionResult

#: file names inside an output directory
MASK_FILE = "mask.h5"
PREDICTION_MASK_FILE = "prediction_mask.npy"
DETECTIONS_FILE = "detections.json"
GROUPDQ_FILE = "groupdq.fits"
PREVIEW_FILE = "preview.png"

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
        Column("confidence", pa.float64(), "", "rules: 1 - chance that noise alone reaches this significance "
               "in the pixel; U-Net: mean class probability over the event's pixels"),
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
        write_table_group(f, "rtn_switches", result.rtn_switches, units={"frame": "group"})
        ev = {k: (v.astype(str) if k == "type" else v) for k, v in result.events.items()}
        write_table_group(f, "events", ev, units={c.name: c.unit for c in event_columns(unit) if c.unit})
        set_attrs(f["class_mask"], {"counts": result.counts()})
    return Path(path)


def events_schema(unit: str) -> pa.Schema:
    return make_schema(event_columns(unit), {"table": EVENTS_TABLE, "class_codes": json.dumps(CLASS_CODES)})


def write_events_parquet(result: DetectionResult, path) -> Path:
    """The event table as one Parquet file at ``path`` (units and descriptions in the field metadata)."""
    import pyarrow.parquet as pq

    from astrid_pipeline.io.atomic import atomic_path
    from astrid_pipeline.io.parquet_io import to_arrow

    df = events_table(result)
    if "confidence" not in df:
        df["confidence"] = event_confidence(result)
    table = to_arrow(df, events_schema(result.unit))
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd")
    return Path(path)


def _clean(v):
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.floating, float)):
        v = float(v)
        return None if not math.isfinite(v) else round(v, 4)
    if isinstance(v, np.bool_):
        return bool(v)
    return v


def event_confidence(result: DetectionResult) -> np.ndarray:
    """Confidence in [0, 1] of every event.

    Rules: one minus the chance that noise alone gives this significance
    somewhere in the pixel's ramp, ``1 - min(1, (groups - 1) x P(N(0,1) > snr))``
    (ohana reports a confidence per detection; a 5 sigma event scores
    0.99999). Events the U-Net made or changed carry its mean class
    probability instead (``result.events["confidence"]`` when present).
    """
    ev = result.events
    if "confidence" in ev:
        return np.asarray(ev["confidence"], dtype=np.float64)
    from scipy.special import ndtr

    z = np.nan_to_num(np.asarray(ev["snr"], dtype=np.float64), nan=0.0, posinf=50.0, neginf=0.0)
    return 1.0 - np.minimum(1.0, max(result.n_groups - 1, 1) * ndtr(-z))


def event_pixels(result: DetectionResult) -> list[np.ndarray]:
    """The (row, col) pixels of every event, from the jump list (RTN events: their pixel)."""
    ev = result.events
    E = len(ev["type"])
    out = [np.zeros((0, 2), np.int64) for _ in range(E)]
    j = result.jumps
    e = np.asarray(j.get("event", np.zeros(0)), dtype=np.int64)
    sel = e >= 0
    if sel.any():
        ny, nx = result.mask.shape
        key = np.unique(e[sel].astype(np.int64) * (ny * nx) + j["y"][sel].astype(np.int64) * nx + j["x"][sel])
        eid = key // (ny * nx)
        rest = key % (ny * nx)
        cuts = np.flatnonzero(np.diff(eid)) + 1
        for grp_e, grp in zip(np.split(eid, cuts), np.split(rest, cuts)):
            if len(grp) and grp_e[0] < E:
                out[int(grp_e[0])] = np.stack([grp // nx, grp % nx], axis=1)
    for i in range(E):
        if len(out[i]) == 0:
            out[i] = np.array([[int(round(ev["centroid_y"][i])), int(round(ev["centroid_x"][i]))]])
    return out


def detections_list(result: DetectionResult) -> list[dict]:
    """ohana's ``detections.json`` entries (one dict per event), with ohana's keys first."""
    ev = result.events
    conf = event_confidence(result)
    pixels = event_pixels(result)
    source = ev.get("confidence_source")
    out = []
    for i in range(len(ev["type"])):
        t = ev["type"][i]
        cy, cx = ev["centroid_y"][i], ev["centroid_x"][i]
        d = {
            "type": t,
            "centroid": [_clean(cy), _clean(cx)],
            "center_pixel": [int(round(float(cy))), int(round(float(cx)))],
            "pixel_coords": pixels[i].tolist(),
            "first_frame": _clean(ev["first_frame"][i]),
            "mean_intensity": _clean(ev["mean_intensity"][i]),
            "max_intensity": _clean(ev["max_intensity"][i]),
            "spatial_extent": _clean(ev["spatial_extent"][i]),
            "confidence": _clean(conf[i]),
            "step_fit_quality": _clean(ev["fit_quality"][i]),
        }
        if t == "telegraph_noise":
            d["position"] = d["center_pixel"]
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
        d["confidence_source"] = str(source[i]) if source is not None else "rules"
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


def write_prediction_mask(path, result: DetectionResult) -> Path:
    """ohana's ``prediction_mask.npy``: the class mask, uint8 (rows, cols)."""
    from astrid_pipeline.io.atomic import atomic_path

    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, np.ascontiguousarray(result.mask, dtype=np.uint8))
    return Path(path)


def write_products(result: DetectionResult, out_dir, *, events_path=None, attrs: dict | None = None,
                   preview: bool = True, title: str = "", groupdq: bool = False, n_integrations: int = 1) -> dict:
    """Write every product of one detection into ``out_dir``; returns their paths by name.

    ``mask.h5``, ``prediction_mask.npy`` and ``detections.json`` always;
    ``preview.png`` with ``preview``; ``groupdq.fits`` (JWST GROUPDQ/PIXELDQ,
    ``n_integrations`` deep) with ``groupdq``; the Parquet event table at
    ``events_path`` when given. Temporary files a killed run left in these folders are swept first; when
    one write fails, every product of the set is removed (the new ones and an earlier run's), so a reader
    never finds a new mask beside old detections.
    """
    from astrid_pipeline.io.atomic import sweep_orphan_temporaries

    d = Path(out_dir)
    for folder in {d, *([Path(events_path).parent] if events_path is not None else [])}:
        sweep_orphan_temporaries(folder)  # what a killed run left half-written is removed, not left beside
    try:
        return _write_product_set(result, d, events_path=events_path, attrs=attrs, preview=preview, title=title,
                                  groupdq=groupdq, n_integrations=n_integrations)
    except BaseException:
        for p in [d / n for n in (MASK_FILE, PREDICTION_MASK_FILE, DETECTIONS_FILE, GROUPDQ_FILE, PREVIEW_FILE)] + (
                [Path(events_path)] if events_path is not None else []):
            with contextlib.suppress(OSError):  # a clean-up failure never hides the original error
                p.unlink()
        raise


def _write_product_set(result: DetectionResult, d: Path, *, events_path, attrs, preview, title, groupdq,
                       n_integrations) -> dict:
    paths = {
        "mask": write_mask_hdf5(d / MASK_FILE, result, attrs),
        "prediction_mask": write_prediction_mask(d / PREDICTION_MASK_FILE, result),
        "detections": write_detections_json(d / DETECTIONS_FILE, result),
    }
    if events_path is not None:
        paths["events"] = write_events_parquet(result, events_path)
    if groupdq:
        from astrid_pipeline.science.ramps.jwst_dq import groupdq_from_detection, write_dq_fits

        gdq, pdq = groupdq_from_detection(result, n_integrations=max(n_integrations, result.integration + 1))
        paths["groupdq"] = write_dq_fits(d / GROUPDQ_FILE, gdq, pdq, {"INTEGRAT": result.integration})
    if preview:
        paths["preview"] = preview_png(d / PREVIEW_FILE, result, title=title)
    return paths
