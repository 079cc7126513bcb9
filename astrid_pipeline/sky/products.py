"""The sky branch's products, each declared once: where it lives, its schema, its header keywords, and how
it is read back.

Paths come from :class:`~astrid_pipeline.layout.DataLayout` (one method per product); :func:`product_paths`
says which files make up each asset, so the runner can invalidate them together. The Parquet schemas carry
units and descriptions in their field metadata. The readers turn every way a product can be unusable into a
named error from :mod:`astrid_pipeline.errors` naming the file. Plain Python: no Dagster here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from astropy.io import fits

from astrid_pipeline.errors import InputFileError
from astrid_pipeline.io.fits_io import SkyImage, open_fits, read_sky_image
from astrid_pipeline.io.parquet_io import Column, make_schema
from astrid_pipeline.layout import DataLayout


@dataclass
class StepResult:
    paths: dict[str, Path]
    metadata: dict[str, Any]


# --------------------------------------------------------------------------- schemas
TRUTH_SCHEMA = make_schema([
    Column("transient_id", pa.string(), "", "unique id of the injected transient"),
    Column("region", pa.string(), "", "sky region (partition key)"),
    Column("type", pa.string(), "", "supernova, variable, nova, asteroid, asteroid_trailed or faint"),
    Column("epoch", pa.string(), "", "epoch holding the signal: science, or reference for a moved asteroid"),
    Column("sign", pa.int16(), "", "+1 brighter in the science image, -1 fainter"),
    Column("x", pa.float64(), "pix", "0-based column in the science image"),
    Column("y", pa.float64(), "pix", "0-based row in the science image"),
    Column("ra", pa.float64(), "deg", "ICRS right ascension"),
    Column("dec", pa.float64(), "deg", "ICRS declination"),
    Column("delta_flux", pa.float64(), "adu", "flux change in science-image counts"),
    Column("mag", pa.float64(), "mag", "magnitude of |delta_flux| on the science zero point"),
    Column("expected_snr", pa.float64(), "", "optimal (ZOGY) detection S/N of the change: the physical limit"),
    Column("host_x", pa.float64(), "pix", "host galaxy centre (supernovae)"),
    Column("host_y", pa.float64(), "pix", "host galaxy centre (supernovae)"),
    Column("trail_length_px", pa.float64(), "pix", "trail length (trailed asteroids)"),
    Column("mjd", pa.float64(), "d", "MJD of the epoch holding the signal"),
])


CR_SCHEMA = make_schema([
    Column("cr_id", pa.int64(), "", "hit number"),
    Column("kind", pa.string(), "", "spot or track"),
    Column("x", pa.float64(), "pix", "start column"),
    Column("y", pa.float64(), "pix", "start row"),
    Column("length_px", pa.float64(), "pix", "track length (1 for spots)"),
    Column("charge_e", pa.float64(), "electron", "deposited charge"),
    Column("npix", pa.int64(), "", "pixels hit"),
])


CANDIDATE_SCHEMA = make_schema([
    Column("candidate_id", pa.int64(), "", "candidate number within the region, brightest |S/N| first"),
    Column("region", pa.string(), "", "sky region (partition key)"),
    Column("x", pa.float64(), "pix", "0-based column on the science grid (windowed centroid on S_corr)"),
    Column("y", pa.float64(), "pix", "0-based row on the science grid"),
    Column("ra", pa.float64(), "deg", "ICRS right ascension"),
    Column("dec", pa.float64(), "deg", "ICRS declination"),
    Column("flux", pa.float64(), "adu", "PSF flux of the change, S/F_S, in the science image's units (BUNIT, "
                                       "summed over the PSF's pixels; the unit field says which)"),
    Column("flux_err", pa.float64(), "adu", "1-sigma error of flux (source, background and astrometric noise, "
                                           "times the S_corr normalisation)"),
    Column("snr", pa.float64(), "", "peak S_corr: signed significance"),
    Column("sign", pa.int16(), "", "+1 brighter in the science image, -1 fainter"),
    Column("a", pa.float64(), "pix", "major-axis sigma from weighted moments of D"),
    Column("b", pa.float64(), "pix", "minor-axis sigma"),
    Column("theta", pa.float64(), "rad", "major-axis angle from +x towards +y"),
    Column("fwhm", pa.float64(), "pix", "FWHM equivalent of (a, b)"),
    Column("ellipticity", pa.float64(), "", "1 - b/a"),
    Column("npix", pa.int64(), "pix", "pixels in the S_corr segment"),
    Column("flags", pa.int32(), "", "bit flags: 1=edge 2=saturated 4=bad_pixel 8=dipole 16=bright_star 32=sharp "
                                    "64=hole"),
    Column("clean", pa.bool_(), "", "flags == 0: a clean transient candidate"),
    Column("edge", pa.bool_(), "", "near the border or the reference footprint edge"),
    Column("saturated", pa.bool_(), "", "saturated pixel nearby"),
    Column("bad_pixel", pa.bool_(), "", "masked pixel nearby"),
    Column("dipole", pa.bool_(), "", "opposite-sign lobe next to it"),
    Column("bright_star", pa.bool_(), "", "small change on a bright reference source"),
    Column("sharp", pa.bool_(), "", "sharper than the PSF (cosmic ray, hot pixel)"),
    Column("hole", pa.bool_(), "", "one image dips below its sky there (a brightening over a reference hole, "
                                   "a fading into a science hole)"),
    Column("reference_flux", pa.float64(), "adu", "PSF flux in the scaled reference at the position (science units)"),
    Column("neighbour_ratio", pa.float64(), "", "sharpness statistic (neighbours / peak) in the classic difference"),
    Column("mjd", pa.float64(), "d", "science MJD"),
    Column("truth_id", pa.string(), "", "matched injected transient (simulated data), else empty"),
    Column("label", pa.string(), "", "truth type, cosmic_ray, bogus or artifact (simulated); unknown on real data"),
])


#: columns whose unit is the science image's BUNIT
FLUX_COLUMNS = ("flux", "flux_err", "reference_flux")


def candidate_schema(flux_unit: str = "adu") -> pa.Schema:
    """CANDIDATE_SCHEMA with the flux columns' unit set to the science image's BUNIT."""
    fields = []
    for f in CANDIDATE_SCHEMA:
        if f.name in FLUX_COLUMNS:
            meta = dict(f.metadata or {})
            meta[b"unit"] = (flux_unit or "unknown").encode()
            f = f.with_metadata(meta)
        fields.append(f)
    return pa.schema(fields, metadata=CANDIDATE_SCHEMA.metadata)


def noise_gain(header) -> float | None:
    """Electrons per data unit as acquisition recorded it (GAINUSED; -1 = unknown -> None).

    Files written before GAINUSED existed fall back to their GAIN keyword.
    """
    for key in ("GAINUSED", "GAIN"):
        if key in header:
            try:
                g = float(header[key])
            except (TypeError, ValueError):
                return None
            return g if g > 0 and np.isfinite(g) else None
    return None


def header_gain(header, default=1.0) -> float:
    """The gain in electrons per data unit, ``default`` when unknown (see :func:`noise_gain`)."""
    g = noise_gain(header)
    return default if g is None else g


def bunit_of(header) -> str:
    return str(header.get("BUNIT", "") or "").strip()


def unit_card(bunit: str, what: str) -> tuple[str, str]:
    return (bunit, what if bunit else f"{what}; unknown: the input has no BUNIT")


def mask_header(what: str) -> fits.Header:
    h = fits.Header()
    h["BUNIT"] = ("", f"dimensionless mask: 1 = {what}")
    return h


def unit_header(bunit: str, comment: str) -> fits.Header:
    h = fits.Header()
    h["BUNIT"] = (bunit, comment)
    return h


def time_cards(header) -> dict:
    """The epoch's own time keywords (MJD-OBS, DATE-OBS, ...), to carry onto a product of that epoch."""
    from astrid_pipeline.io.fits_io import TIME_KEYWORDS

    return {k: (header[k], header.comments[k]) for k in TIME_KEYWORDS if k in header}


def saturation_map(img: SkyImage, margin: float = 0.98) -> np.ndarray:
    sat = img.extras.get("saturate")
    out = np.zeros(img.shape, bool)
    if sat is not None and np.isfinite(sat) and sat > 0:
        out |= np.nan_to_num(img.data, nan=0.0) >= margin * sat
    return out


def read_ext(path: Path, name: str) -> np.ndarray:
    hdul = open_fits(path)
    try:
        if name not in hdul:
            raise InputFileError(path, f"has no {name} extension")
        return np.array(hdul[name].data)
    finally:
        hdul.close()


def read_header(path: Path, ext=0) -> fits.Header:
    hdul = open_fits(path)
    try:
        return hdul[ext].header.copy()
    finally:
        hdul.close()


def read_psfs(layout: DataLayout, region: str):
    """(science PSF, reference PSF) as :func:`measure_psfs` wrote them (with any oversampled user PSF)."""
    from astrid_pipeline.science.psf import PSFModel

    hdul = open_fits(layout.psf_models(region))
    try:
        out = {}
        for name in ("PSF_SCI", "PSF_REF"):
            h = hdul[name].header
            os_name = f"{name}_OS"
            over, k = (np.array(hdul[os_name].data, dtype=np.float32), int(hdul[os_name].header["OVERSAMP"])) \
                if os_name in hdul else (None, 1)
            out[name] = PSFModel.from_header(np.array(hdul[name].data, dtype=np.float32), h, over, k)
        return out["PSF_SCI"], out["PSF_REF"]
    finally:
        hdul.close()


def read_cr_mask(layout: DataLayout, region: str, shape) -> np.ndarray | None:
    """The science CR mask (bool) when one has been made for this region, else None."""
    p = layout.cosmic_ray_mask(region)
    if not p.exists():
        return None
    m = np.asarray(read_ext(p, "PRIMARY"), bool)
    if m.shape != tuple(shape):
        raise InputFileError(p, f"CR mask shape {m.shape} differs from the science image {tuple(shape)}; "
                                "re-materialize cosmic_ray_mask")
    return m


# --------------------------------------------------------------------------- 1. alignment
def read_error_sigma(path: Path, shape) -> np.ndarray | None:
    """The ERR extension acquisition (or alignment) wrote, as a float array; None when there is none."""
    hdul = open_fits(path)
    try:
        if "ERR" not in hdul or hdul["ERR"].data is None or hdul["ERR"].data.shape != tuple(shape):
            return None
        return np.array(hdul["ERR"].data, dtype=np.float64)
    finally:
        hdul.close()


def read_pair_inputs(layout: DataLayout, region: str, merge_cr: bool = True):
    sci_p = layout.raw_image(region, "science")
    al_p = layout.aligned_reference(region)
    sci = read_sky_image(sci_p)
    cr = read_cr_mask(layout, region, sci.shape) if merge_cr else None
    if cr is not None:  # CR pixels are bad pixels from here on (like bad columns)
        sci.mask = sci.mask | cr
    hdul = open_fits(al_p)
    try:
        aligned = np.array(hdul[0].data, dtype=np.float64)
        outside = np.array(hdul["OUTSIDE"].data, bool)
        badref = np.array(hdul["BADPIX"].data, bool)
        satref = np.array(hdul["SATMASK"].data, bool)
        al_hdr = hdul[0].header.copy()
    finally:
        hdul.close()
    bad = sci.mask | outside | badref | ~np.isfinite(aligned)
    return sci, aligned, al_hdr, bad, outside, badref, satref


def read_normalized(layout: DataLayout, region: str):
    ps, pr_ = layout.normalized_image(region, "science"), layout.normalized_image(region, "reference")
    hs = open_fits(ps)
    hr = open_fits(pr_)
    try:
        N = np.array(hs[0].data, dtype=np.float32)
        R = np.array(hr[0].data, dtype=np.float32)
        hdr = hs[0].header.copy()
    finally:
        hs.close()
        hr.close()
    return N, R, hdr


def read_triplets(layout: DataLayout, region: str, candidate_ids) -> np.ndarray:
    """The region's cutout triplets (N, 3, S, S) float32 in the order of ``candidate_ids``; an
    :class:`~astrid_pipeline.errors.InputFileError` naming the file when a candidate has no triplet."""
    import h5py

    path = layout.triplets(region)
    with h5py.File(path, "r") as f:
        trip = np.asarray(f["triplets"], dtype=np.float32)
        ids = np.asarray(f["metadata/candidate_id"], dtype=np.int64)
    order = {int(c): k for k, c in enumerate(ids)}
    wanted = [int(c) for c in candidate_ids]
    missing = [c for c in wanted if c not in order]
    if missing:
        raise InputFileError(path, f"has no triplet for candidates {missing[:10]} of region {region!r}: re-run "
                                   "the triplets step")
    return trip[[order[c] for c in wanted]] if wanted else trip[:0]


def product_paths(layout, region: str, asset_key: str) -> list[Path]:
    """Every file or folder under the data root that holds ``asset_key`` for ``region``."""
    raw = layout.raw_image(region, "science").parent
    part = {"region": region}
    table = {
        "science_image": [layout.raw_image(region, "science"), raw / "science_psf.fits"],
        "reference_image": [layout.raw_image(region, "reference"), raw / "reference_psf.fits"],
        "transient_truth": [layout.catalog("transient_truth", part).parent,
                            layout.catalog("sim_cosmic_rays", part).parent],
        "cosmic_ray_mask": [layout.cosmic_ray_mask(region)],
        "aligned_reference": [layout.aligned_reference(region)],
        "psf_models": [layout.psf_models(region)],
        "normalized_images": [layout.normalized_image(region, "science"), layout.normalized_image(region, "reference")],
        "zogy_difference": [layout.difference(region, "zogy")],
        "classic_difference": [layout.difference(region, "classic")],
        "candidate_catalog": [layout.catalog("candidates", part).parent, layout.preview(region, "scorr")],
        "cutout_triplets": [layout.triplets(region), layout.preview(region, "triplets")],
        "candidate_scores": [layout.catalog("candidate_scores", part).parent, layout.ds9_regions(region)],
        "alert_packets": [layout.alerts(region)],
    }
    return table.get(asset_key, [])
