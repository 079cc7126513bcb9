"""The sky branch's steps as plain functions over the data layout (no Dagster here).

Each step reads the products of the previous ones (:mod:`astrid_pipeline.sky.products`), calls the science
code, writes its own products atomically and returns a :class:`~astrid_pipeline.sky.products.StepResult`
with the paths and the numbers worth showing. :data:`astrid_pipeline.sky.table.SKY_STEPS` lists them in
order; the Dagster assets, the batch runner and the CLI all go through that table.
"""

from __future__ import annotations

import contextlib
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits

from astrid_pipeline.archives.base import ArchivePair
from astrid_pipeline.errors import InputFileError
from astrid_pipeline.io.atomic import atomic_path
from astrid_pipeline.io.fits_io import exptime_of, open_fits, read_sky_image, write_fits
from astrid_pipeline.io.parquet_io import write_partitioned
from astrid_pipeline.layout import DataLayout
from astrid_pipeline.sky import previews
from astrid_pipeline.sky.products import (
    CR_SCHEMA,
    TRUTH_SCHEMA,
    StepResult,
    bunit_of,
    candidate_schema,
    mask_header,
    noise_gain,
    read_cr_mask,
    read_error_sigma,
    read_ext,
    read_header,
    read_normalized,
    read_pair_inputs,
    read_psfs,
    saturation_map,
    time_cards,
    unit_card,
    unit_header,
)


# --------------------------------------------------------------------------- helpers
def _relabel(exc: InputFileError, source: str) -> InputFileError:
    """The same error, naming the file the archive gave us rather than our temporary copy."""
    return type(exc)(source, exc.reason)


# --------------------------------------------------------------------------- 0. acquisition
#: header keywords that describe the input file's structure, not the image: never copied into a raw product
_STRUCTURE_KEYS = ("SIMPLE", "XTENSION", "BITPIX", "EXTEND", "PCOUNT", "GCOUNT", "BSCALE", "BZERO", "BLANK",
                   "GROUPS", "TFIELDS", "CHECKSUM", "DATASUM", "NEXTEND", "ZIMAGE", "ZBITPIX", "ZCMPTYPE")


_WCS_PREFIXES = ("NAXIS", "CRPIX", "CRVAL", "CTYPE", "CDELT", "CUNIT", "CD1_", "CD2_", "CD3_", "PC", "A_", "B_",
                 "AP_", "BP_", "PV", "PS", "LONPOLE", "LATPOLE", "WCSAXES", "RADESYS", "EQUINOX", "CROTA", "WCSNAME")


def _fwhm_px(img) -> float | None:
    """The seeing FWHM in pixels that the header states, or None (see :func:`science.psf.header_fwhm`)."""
    from astropy.wcs.utils import proj_plane_pixel_scales

    from astrid_pipeline.science.psf import header_fwhm

    scale = float(np.mean(proj_plane_pixel_scales(img.wcs))) * 3600.0
    fwhm, _ = header_fwhm(img.header, scale)
    return fwhm / scale if fwhm else None


def _no_data(data: np.ndarray) -> np.ndarray:
    """Large regions of exactly zero (the empty border of a drizzled mosaic): no data, not sky."""
    from scipy import ndimage

    zero = data == 0
    if zero.sum() < max(100, 0.005 * data.size):
        return np.zeros(data.shape, bool)
    return ndimage.binary_opening(zero, structure=np.ones((5, 5), bool))


def _ingest(hdul: fits.HDUList, source: str, epoch: str, options: dict, region: str, archive: str, settings=None):
    """One epoch as the pipeline keeps it: the chosen 2-D image, its mask and error map, its noise model.

    Returns (HDUList to write, SkyImage, NoiseModel). Only the image, a MASK
    and an ERR extension are written: tables and other HDUs of the input are
    not carried into products.
    """
    from astrid_pipeline.io.fits_io import sky_image_from_hdul, wcs_header
    from astrid_pipeline.science.noise import NoiseSettings, estimate_noise, find_error_map

    cfg = settings or NoiseSettings()
    # the settings give every epoch's defaults; the epoch's image options win
    defaults = {"error_ext": cfg.error_ext, "variance_ext": cfg.variance_ext, "weight_ext": cfg.weight_ext,
                "bunit": cfg.bunit, "gain": cfg.gain or None}
    options = {**{k: v for k, v in defaults.items() if v}, **{k: v for k, v in options.items() if v not in (None, "")}}
    img = sky_image_from_hdul(hdul, source, options.get("hdu"), band=options.get("band"), require_exptime=True)
    chosen = hdul[img.extras["hdu"]]
    emap = None
    if img.extras.get("plane") is None:
        emap = find_error_map(hdul, img.shape, error_ext=options.get("error_ext", ""),
                              variance_ext=options.get("variance_ext", ""), weight_ext=options.get("weight_ext", ""),
                              path=source)
    nodata = _no_data(img.data)
    if emap is not None:
        nodata |= ~np.isfinite(emap.sigma) & ~img.mask  # zero weight / no error: no data there
    mask = img.mask | nodata
    model = estimate_noise(img.data, img.header, mask, error_map=emap, fwhm=_fwhm_px(img),
                           bunit=str(options.get("bunit", "") or ""), gain=options.get("gain"), settings=cfg,
                           path=source)
    hdr = img.header.copy()
    if chosen is not hdul[0]:  # the primary's HISTORY and COMMENT travel too (provenance, product cues)
        for card in hdul[0].header.cards:
            if card.keyword in ("HISTORY", "COMMENT"):
                hdr.append(card)
    for k in _STRUCTURE_KEYS:
        while k in hdr:
            del hdr[k]
    if np.ndim(chosen.data) != 2:  # a cube plane or degenerate axes: the 2-D celestial WCS replaces the input's
        for k in list(hdr.keys()):
            if k.startswith(_WCS_PREFIXES):
                del hdr[k]
        hdr.update(wcs_header(img.wcs))
    if "BUNIT" in hdr and options.get("bunit"):
        hdr["BUNITIN"] = (str(hdr["BUNIT"]), "BUNIT of the input (overridden by the image option)")
    for k, v in model.header_cards().items():
        hdr[k] = v
    hdr["ARCHIVE"] = (archive, "where this image came from")
    hdr["SRCFILE"] = Path(str(source)).name[:68]
    hdr["ASTREPCH"] = (epoch, "role in the pair")
    hdr["ASTRHDU"] = (str(img.extras.get("hdu_name") or img.extras["hdu"])[:40] +
                      (f"[band {img.extras['plane']}]" if img.extras.get("plane") else ""), "input HDU read as the image")
    if options.get("cosmic_rays"):
        hdr["ASTCRAPP"] = (str(options["cosmic_rays"]), "cosmic-ray masking: skip, auto or force (image option)")
    hdr.add_history(f"acquired by astrid-pipeline for region {region} from {source}")
    hdr.add_history(f"noise model: {model.method}; gain {model.gain_source or 'unknown'}")
    hdus = [fits.PrimaryHDU(img.data.astype(np.float32), hdr)]
    if mask.any():
        hdus.append(fits.ImageHDU(mask.astype(np.uint8), mask_header("bad pixel or no data"), name="MASK"))
    if emap is not None:
        eh = unit_header(model.bunit, "1-sigma uncertainty, same units as the image")
        eh["ERRSRC"] = (emap.source[:60], "input extension(s) of this error map")
        eh["ERRABS"] = (bool(emap.absolute), "absolute (T) or relative weight scaled to the data (F)")
        hdus.append(fits.ImageHDU(np.where(np.isfinite(emap.sigma), emap.sigma, np.nan).astype(np.float32), eh,
                                  name="ERR"))
    return fits.HDUList(hdus), img, model


def _copy_user_psf(src: str, dst: Path) -> Path:
    """Copy a user PSF file unchanged after checking it opens and holds a 2-D image."""
    import shutil

    from astrid_pipeline.errors import BadShapeError

    hdul = open_fits(src)
    try:
        ok = any(h.is_image and h.data is not None and
                 (np.ndim(h.data) == 2 or (np.ndim(h.data) > 2 and all(n == 1 for n in np.shape(h.data)[:-2])))
                 for h in hdul)
    finally:
        hdul.close()
    if not ok:
        raise BadShapeError(src, "the PSF file has no 2-D image HDU")
    with atomic_path(dst) as tmp:
        shutil.copyfile(src, tmp)
    return dst


def acquire(layout: DataLayout, region: str, pair: ArchivePair, noise=None) -> StepResult:
    """Validate the fetched pair and write it (both files or neither) with provenance and its noise model.

    Each epoch's image is picked by its image options (``hdu``, ``band``),
    its error map read (``error_ext``/``variance_ext``/``weight_ext``, else
    the usual names) and its noise model built
    (:func:`astrid_pipeline.science.noise.estimate_noise`; ``bunit`` and
    ``gain`` options override the header). The raw product holds the 2-D
    image with the input's header, a MASK and an ERR extension where there
    are any, and the keywords later steps read: BUNIT, NOISESRC, GAINUSED,
    GAINSRC, NOISEPIX, NOISEAC1, ... A user PSF (``psf`` option) is copied
    beside the raw image as ``<epoch>_psf.fits``. ``noise`` (a
    :class:`~astrid_pipeline.science.noise.NoiseSettings`) gives defaults for
    both epochs.
    """
    paths = {e: layout.raw_image(region, e) for e in ("science", "reference")}
    options = getattr(pair, "image_options", None) or {}
    with contextlib.ExitStack() as stack:
        tmps = {e: stack.enter_context(atomic_path(p)) for e, p in paths.items()}
        info, models = {}, {}
        for epoch, hdul, source in (("science", pair.science, pair.science_source),
                                    ("reference", pair.reference, pair.reference_source)):
            archive = str(pair.provenance.get(f"{epoch}_archive", pair.provenance.get("archive", "unknown")))
            out, img, model = _ingest(hdul, str(source), epoch, dict(options.get(epoch) or {}), region, archive,
                                      noise)
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="Card is too long", category=fits.verify.VerifyWarning)
                out.writeto(tmps[epoch], output_verify="silentfix")
            info[epoch], models[epoch] = img, model
        sci, ref = info["science"], info["reference"]
        from astrid_pipeline.errors import NoOverlapError
        from astrid_pipeline.science.alignment import overlap_fraction

        frac = overlap_fraction(sci.wcs, sci.shape, ref.wcs, ref.shape)
        if frac == 0.0:
            raise NoOverlapError(pair.reference_source,
                                 f"does not overlap the science image {pair.science_source} on the sky")
        from astropy.wcs.utils import proj_plane_pixel_scales

        meta = {
            "science_shape": list(sci.shape), "reference_shape": list(ref.shape),
            "science_exptime_s": exptime_of(sci.header), "reference_exptime_s": exptime_of(ref.header),
            "science_pixscale_arcsec": float(np.mean(proj_plane_pixel_scales(sci.wcs)) * 3600),
            "reference_pixscale_arcsec": float(np.mean(proj_plane_pixel_scales(ref.wcs)) * 3600),
            "science_mjd": float(sci.header.get("MJD-OBS", np.nan)),
            "overlap_fraction": frac,
            "archive": str(pair.provenance.get("archive", "unknown")),
        }
        for epoch, m in models.items():
            meta[f"{epoch}bunit_of"] = m.bunit
            meta[f"{epoch}_noise_method"] = m.method
            meta[f"{epoch}header_gain"] = m.gain
            meta[f"{epoch}_gain_source"] = m.gain_source or "none"
            meta[f"{epoch}_error_map"] = m.error_source
            meta[f"{epoch}_noise_pixel"] = m.sigma_pixel
            meta[f"{epoch}_noise_autocorr_lag1"] = m.autocorr_lag1
            meta[f"{epoch}_noise_warnings"] = list(m.warnings)
        for epoch in ("science", "reference"):
            psf_src = (options.get(epoch) or {}).get("psf")
            if psf_src:
                dst = paths[epoch].with_name(f"{epoch}_psf.fits")
                paths[f"{epoch}_psf"] = _copy_user_psf(str(psf_src), dst)
                meta[f"{epoch}_user_psf"] = str(psf_src)
    if pair.truth is not None:
        t = pair.truth.copy()
        t["region"] = region
        paths["truth"] = write_partitioned(t, layout.root, "transient_truth", {"region": region}, TRUTH_SCHEMA)
        meta["n_injected"] = int(len(t))
    if pair.cosmic_rays is not None:
        paths["cosmic_rays"] = write_partitioned(pair.cosmic_rays, layout.root, "sim_cosmic_rays", {"region": region}, CR_SCHEMA)
        meta["n_cosmic_rays"] = int(len(pair.cosmic_rays))
    return StepResult(paths, meta)


def align(layout: DataLayout, region: str, order: str = "bicubic", refine: bool = True) -> StepResult:
    """Resample the reference (and its masks and error map) once onto the science grid.

    The residual offset between the two WCS is measured on stars before any
    resampling and folded into the mapping (ALNNATX/ALNNATY/ALNNATN, applied
    as ALNSHFX/ALNSHFY); the ALN* residuals are then measured on the aligned
    product. The aligned reference keeps the reference epoch's MJD-OBS and
    DATE-OBS and its BUNIT.
    """
    from astrid_pipeline.science.alignment import align_to_grid

    sci_p, ref_p = layout.raw_image(region, "science"), layout.raw_image(region, "reference")
    sci = read_sky_image(sci_p)
    ref = read_sky_image(ref_p)
    ref_err = read_error_sigma(ref_p, ref.shape)
    res = align_to_grid(ref.data, ref.wcs, sci.wcs, sci.shape, ref.mask, sci.data, sci.mask, order=order,
                        refine=refine, saturation=sci.extras.get("saturate"), path=str(ref_p),
                        ref_saturated=saturation_map(ref), ref_variance=None if ref_err is None else ref_err ** 2)
    qa = res.qa()
    nat = res.native or {}
    qa.update(native_dx=float(nat.get("dx", 0.0)), native_dy=float(nat.get("dy", 0.0)),
              native_rms=float(nat.get("rms", float("nan"))), native_n=int(nat.get("n", 0)))
    mi = res.mapping_info or {"method": "exact", "max_error_px": 0.0}
    qa.update(mapping_method=str(mi["method"]), mapping_max_error_px=float(mi["max_error_px"]))
    hdr = ref.header.copy()
    for k in list(hdr.keys()):
        if k.startswith(_WCS_PREFIXES):
            del hdr[k]

    def num(v):
        return round(float(v), 5) if np.isfinite(v) else -1.0

    kw = {
        "ALNFOOT": (round(qa["footprint_fraction"], 6), "grid fraction covered by the reference"),
        "ALNDX": (round(qa["residual_dx"], 5), "[pix] median star offset x after alignment"),
        "ALNDY": (round(qa["residual_dy"], 5), "[pix] median star offset y after alignment"),
        "ALNRMS": (num(qa["residual_rms"]), "[pix] rms of matched-star offsets"),
        "ALNRMSX": (num(qa["residual_rms_x"]), "[pix]"),
        "ALNRMSY": (num(qa["residual_rms_y"]), "[pix]"),
        "ALNNMAT": (qa["n_matched"], "stars matched"),
        "ALNSHFX": (round(qa["shift_x"], 5), "[pix] WCS offset folded into the mapping, x"),
        "ALNSHFY": (round(qa["shift_y"], 5), "[pix] WCS offset folded into the mapping, y"),
        "ALNNATX": (round(qa["native_dx"], 5), "[pix] offset measured before resampling, x"),
        "ALNNATY": (round(qa["native_dy"], 5), "[pix] offset measured before resampling, y"),
        "ALNNATN": (qa["native_n"], "stars matched before resampling"),
        "ALNORDER": (order, "interpolation"),
        "ALNNINTP": (1, "interpolations applied to the reference"),
        "ALNMAPM": (qa["mapping_method"], "pixel mapping: coarse grid + spline, or exact"),
        "ALNMAPE": (float(f"{qa['mapping_max_error_px']:.3g}"), "[pix] measured bound of the mapping error"),
        "BUNIT": unit_card(bunit_of(ref.header), "reference units (not yet flux-matched)"),
    }
    sat = res.saturated if res.saturated is not None else np.zeros(sci.shape, bool)
    outside = res.outside if res.outside is not None else res.mask
    exts = [("OUTSIDE", outside.astype(np.uint8), mask_header("outside the reference footprint")),
            ("BADPIX", (res.mask & ~outside).astype(np.uint8), mask_header("bad reference pixel")),
            ("SATMASK", sat.astype(np.uint8), mask_header("saturated in the reference"))]
    if res.variance is not None:
        exts.append(("ERR", np.sqrt(res.variance).astype(np.float32),
                     unit_header(bunit_of(ref.header), "reference 1-sigma uncertainty, resampled")))
    out = write_fits(layout.aligned_reference(region), res.data.astype(np.float32), header=hdr, wcs=sci.wcs,
                     extensions=exts, step="aligned_reference", inputs=[sci_p, ref_p], keywords=kw)
    return StepResult({"aligned_reference": out}, qa)


def cosmic_ray_mask(layout: DataLayout, region: str, checkpoint: str | None = None, method: str = "auto",
                    threshold: float | None = None, sigclip: float = 4.5, objlim: float = 5.0, sigfrac: float = 0.3,
                    *, settings=None, image_options: dict | None = None) -> StepResult:
    """CR mask of the science image, when single-exposure CR masking applies to it.

    ``settings``: a :class:`~astrid_pipeline.science.cosmic_rays.masks.CosmicRayMaskSettings`
    (method, model_source, operating point, L.A.Cosmic parameters,
    applicability). Without it the older keyword form is used: ``checkpoint``
    (a .pt; none = the shipped weights), ``method``, ``threshold`` (None =
    the calibrated operating point) and the L.A.Cosmic parameters.
    ``image_options``: the science epoch's image options (``cosmic_rays``:
    skip | auto | force); else the ``ASTCRAPP`` keyword that acquisition
    writes from them.

    Writes ``sky/crmask/<region>.fits`` (uint8 mask; a PROB extension with the
    network's probability when a model was used; CRMODEL and CRMDSHA name the
    detector and the sha256 of its checkpoint). When masking does not apply
    (a co-added or resampled product, or configured off) the mask is all zero
    with ``CRSKIP = T`` and the reason in ``CRREASON``, so readers need no
    special case. The later steps treat the masked pixels as bad.
    """
    from astrid_pipeline.ml.weights_path import SHIPPED_WEIGHTS
    from astrid_pipeline.science.cosmic_rays.applicability import cr_masking_applies
    from astrid_pipeline.science.cosmic_rays.calibration import count_groups
    from astrid_pipeline.science.cosmic_rays.masks import (CosmicRayMaskSettings, detect_cosmic_rays,
                                                           detector_parameters, resolve_checkpoint)

    if settings is None:
        shipped = not checkpoint or Path(checkpoint).resolve() == SHIPPED_WEIGHTS.resolve()
        settings = CosmicRayMaskSettings(method=method, model_source="shipped" if shipped else "path",
                                         checkpoint="" if shipped else str(checkpoint), threshold=threshold,
                                         sigclip=sigclip, objlim=objlim, sigfrac=sigfrac)
    settings = settings.validate()
    sci_p = layout.raw_image(region, "science")
    sci = read_sky_image(sci_p)
    headers, err = [], None
    hdul = open_fits(sci_p)
    try:  # the primary and the image extension, HISTORY/COMMENT included: their cues decide applicability
        headers = [h.header.copy() for h in hdul[:2] if h.is_image]
        if "ERR" in hdul and hdul["ERR"].data is not None and hdul["ERR"].data.shape == sci.shape:
            err = np.array(hdul["ERR"].data, dtype=np.float64)  # the noise model's 1-sigma map: the gate's noise
    finally:
        hdul.close()
    options = dict(image_options or {})
    if "cosmic_rays" not in options and str(headers[0].get("ASTCRAPP", "")).strip():
        options["cosmic_rays"] = str(headers[0]["ASTCRAPP"]).strip().lower()
    applies, reason = cr_masking_applies(headers, str(sci.header.get("SRCFILE", sci_p.name)), options,
                                         settings.applicability)
    out_p = layout.cosmic_ray_mask(region)
    common = {"BUNIT": ("", "dimensionless mask: 1 = cosmic-ray pixel"), "CRSKIP": (not applies, "CR masking skipped"),
              "CRREASON": reason[:68]}  # no comment: the card holds 68 characters of reason
    if not applies:
        import logging

        logging.getLogger(__name__).info("region %s: cosmic-ray masking skipped: %s", region, reason)
        kw = {**common, "CRMETHOD": ("skipped", "model, lacosmic or skipped"), "CRNPIX": (0, "pixels flagged"),
              "CRMODEL": ("none", "detector"), "CRMDSHA": ("none", "sha256 prefix of the detector checkpoint")}
        out = write_fits(out_p, np.zeros(sci.shape, np.uint8), wcs=sci.wcs, step="cosmic_ray_mask", inputs=[sci_p],
                         keywords=kw)
        with fits.open(out, mode="update") as h:  # the full reason, beyond one card
            h[0].header.add_history(f"CR masking skipped: {reason}")
        return StepResult({"cosmic_ray_mask": out}, {"method": "skipped", "skipped": True, "reason": reason,
                                                     "n_cr_pixels": 0, "cr_pixel_fraction": 0.0, "n_cr_groups": 0,
                                                     "detector": "none"})
    trained = layout.model_dir(f"cr2d_{settings.trained_model}") / "model.pt"
    ck, note = resolve_checkpoint(settings, trained)
    det = detector_parameters(sci.header)
    gain = det["gain"]
    sat = sci.extras.get("saturate")
    data = np.where(sci.mask, np.nan, sci.data)  # known bad pixels (bad columns) are not CRs
    res = detect_cosmic_rays(data, method="model" if ck is not None else "lacosmic", checkpoint=ck,
                             threshold=settings.threshold, grow_threshold=settings.grow_threshold,
                             min_snr=settings.min_snr, gain=gain or 1.0, noise=err,
                             read_noise=det["read_noise_e"] / (gain or 1.0),
                             saturation=0.98 * sat if sat else None, lacosmic=settings.lacosmic())
    exts = [] if res.probability is None else [("PROB", res.probability.astype(np.float32), None)]
    n_groups = count_groups(res.mask)
    if res.method == "model":
        name = f"{res.info['model']} ({settings.model_source})"
        sha = res.info["sha256_prefix"]
        kw_model = {"CRTHRESH": (res.info["threshold"], "seed probability threshold"),
                    "CRGROW": (res.info["grow_threshold"], "probability a seeded group grows down to"),
                    "CRMINSNR": (res.info["min_snr"], "[sigma] seed significance gate"),
                    "CRTHSRC": (str(res.info["threshold_source"])[:68], "where the operating point came from")}
    else:
        name, sha, kw_model = "L.A.Cosmic (astroscrappy)", "none", {
            "CRSIGCLP": (settings.sigclip, "L.A.Cosmic sigclip"),
            "CRPEDEST": (round(float(res.info.get("pedestal", 0.0)), 3), "[adu] sky pedestal added for L.A.Cosmic")}
    kw = {**common, "CRMETHOD": (res.method, "model, lacosmic or skipped"), "CRNPIX": (res.n_pixels, "pixels flagged"),
          "CRNGRP": (n_groups, "cosmic-ray groups (8-connected)"), "CRMODEL": (name[:68], "detector"),
          "CRMDSHA": (sha, "sha256 prefix of the detector checkpoint"), **kw_model}
    out = write_fits(out_p, res.mask.astype(np.uint8), wcs=sci.wcs, extensions=exts, step="cosmic_ray_mask",
                     inputs=[sci_p] + ([ck] if ck is not None else []), keywords=kw)
    meta = {"method": res.method, "skipped": False, "reason": reason, "n_cr_pixels": res.n_pixels,
            "cr_pixel_fraction": res.n_pixels / res.mask.size, "n_cr_groups": n_groups, "detector": name,
            "model_sha256": res.info.get("sha256", "none"), "checkpoint": str(ck) if ck is not None else "none",
            "model_note": note, "gain_source": det["gain_source"], "read_noise_source": det["read_noise_source"]}
    meta.update({k: res.info[k] for k in ("threshold", "grow_threshold", "min_snr", "threshold_source", "noise",
                                          "pedestal") if k in res.info})
    if res.method == "model" and err is not None:
        meta["noise"] = "ERR extension of the raw image (the noise model)"
    return StepResult({"cosmic_ray_mask": out}, meta)


# --------------------------------------------------------------------------- 2. PSFs
def measure_psfs(layout: DataLayout, region: str, config=None) -> StepResult:
    """The PSF of the science image and of the aligned reference; a user's PSF file wins over estimation.

    A PSF file that acquisition put beside a raw image
    (``<epoch>_psf.fits``, :func:`astrid_pipeline.science.psf_io.user_psf_path`)
    is resampled onto the science grid (method ``user``). Otherwise the PSF is
    measured on the image's stars (:func:`astrid_pipeline.science.psf.estimate_psf`,
    ``config``: a :class:`~astrid_pipeline.science.psf.PSFConfig`): each
    image with its own bad pixels, saturation (SATURATE, else a detected clip
    level) and, for the science image, the cosmic-ray mask as missing data.
    Fallbacks and anything amiss are in the metadata (``warning_science``,
    ``fallback_science``, ...) and in the PSF_* headers (PSFWARN, PSFFALLB).
    """
    import logging

    from astrid_pipeline.science.psf import PSFConfig, image_psf
    from astrid_pipeline.science.psf_io import pixel_scale_arcsec, user_psf, user_psf_path

    log = logging.getLogger(__name__)
    cfg = config or PSFConfig()
    sci, aligned, _, _, outside, badref, satref = read_pair_inputs(layout, region, merge_cr=False)
    ref = read_sky_image(layout.raw_image(region, "reference"))
    cr = read_cr_mask(layout, region, sci.shape)
    sci_scale = pixel_scale_arcsec(sci.wcs)
    meta: dict[str, Any] = {}
    models = {}
    for epoch, data, bad, crm, raw, satmap, where in (
            ("science", sci.data, sci.mask, cr, sci, saturation_map(sci), sci.path),
            ("reference", aligned, outside | badref | ~np.isfinite(aligned), None, ref, satref,
             str(layout.aligned_reference(region)))):
        upath = user_psf_path(layout.raw_image(region, epoch), epoch)
        if upath.exists():  # the user's PSF wins over estimation
            m = user_psf(upath, sci.wcs, None if epoch == "science" else ref.wcs,
                         max_size=int(min(63, 2 * (min(sci.shape) // 4) + 1)))  # ZOGY needs stamp < image
            meta[f"psf_file_{epoch}"] = str(upath)
        else:
            m, info = image_psf(data, bad, raw.header, saturated=satmap, cr_mask=crm, pixel_scale=sci_scale,
                                header_pixel_scale=pixel_scale_arcsec(raw.wcs), config=cfg, path=where)
            meta.update({f"{k}_{epoch}": v for k, v in info.items()})
        if m.warning:
            log.warning("region %s, %s PSF: %s", region, epoch, m.warning)
        models[epoch] = m
    pn, pr = models["science"], models["reference"]
    size = int(max(pn.stamp.shape[0], pr.stamp.shape[0]))
    exts = []
    for name, m in (("PSF_SCI", pn), ("PSF_REF", pr)):
        stamp = m.render(0.0, 0.0, size).astype(np.float32)
        h = fits.Header()
        for k, v in m.as_header_cards().items():
            h[k] = v
        exts.append((name, stamp, h))
        if m.oversampled is not None:
            exts.append((f"{name}_OS", np.asarray(m.oversampled, np.float32),
                         fits.Header([("OVERSAMP", int(m.oversampling), "samples per pixel side"),
                                      ("PSFSRC", str(m.source)[-60:], "PSF file")])))
    out = write_fits(layout.psf_models(region), None, extensions=exts, step="psf_models",
                     inputs=[sci.path, layout.aligned_reference(region)])
    for epoch, m in (("science", pn), ("reference", pr)):
        meta.update({f"fwhm_{epoch}": float(m.fwhm), f"beta_{epoch}": float(m.beta) if np.isfinite(m.beta) else 99.0,
                     f"n_stars_{epoch}": int(m.n_stars), f"method_{epoch}": m.method,
                     f"warning_{epoch}": m.warning, f"fallback_{epoch}": bool(m.fallback)})
    meta["stamp_size"] = size
    return StepResult({"psf_models": out}, meta)


# --------------------------------------------------------------------------- 3. normalization
def normalize(layout: DataLayout, region: str) -> StepResult:
    """Background-subtract both images and scale the reference to the science flux scale.

    The normalised reference is in the science image's units (BUNIT) but
    keeps the reference epoch's own MJD-OBS/DATE-OBS.
    """
    from astrid_pipeline.science.normalization import normalize_pair

    sci, aligned, al_hdr, bad, *_ = read_pair_inputs(layout, region)
    ref_hdr = read_header(layout.raw_image(region, "reference"))
    pn, pr = read_psfs(layout, region)
    N, R, params = normalize_pair(sci.data, aligned, bad, pn, pr, sci.header, ref_hdr,
                                  saturation=sci.extras.get("saturate"))
    p = params.as_dict()
    unit = bunit_of(sci.header) or "adu"
    gs, gr = noise_gain(sci.header), noise_gain(ref_hdr)
    kw = {
        "BKGSCI": (p["sci_background"], f"[{unit}] science background"),
        "BKGREF": (p["ref_background"], "[reference units] reference background"),
        "RMSSCI": (p["sci_rms"], f"[{unit}] science background noise"),
        "RMSREF": (p["ref_rms"], f"[{unit}] ref noise, science units"),
        "FLXRATIO": (p["flux_ratio"], "sci counts per ref count"),
        "FLXRERR": (p["flux_ratio_err"] if np.isfinite(p["flux_ratio_err"]) else -1.0, "error of FLXRATIO"),
        "FLXMETH": (p["method"], "how the flux ratio was found"),
        "FLXNSTAR": (p["n_stars"], "stars used for the flux ratio"),
        "GAINSCI": (gs if gs is not None else -1.0, "[e-/sci unit] science gain; -1 = unknown"),
        "GAINREF": (gr if gr is not None else -1.0, "[e-/ref unit] reference gain; -1 = unknown"),
        "BUNIT": unit_card(bunit_of(sci.header), "science units"),
    }
    out_s = write_fits(layout.normalized_image(region, "science"), N.astype(np.float32), header=sci.header,
                       wcs=sci.wcs, step="normalized_images", inputs=[sci.path], keywords=kw)
    ref_kw = {**kw, **time_cards(al_hdr),
              "BUNIT": unit_card(bunit_of(sci.header), "science units (reference scaled by FLXRATIO)")}
    out_r = write_fits(layout.normalized_image(region, "reference"), R.astype(np.float32), wcs=sci.wcs,
                       step="normalized_images", inputs=[layout.aligned_reference(region)], keywords=ref_kw)
    return StepResult({"science": out_s, "reference": out_r}, p)


# --------------------------------------------------------------------------- 4. differences
def zogy(layout: DataLayout, region: str, use_source_noise: bool = True, use_astrometric_noise: bool = True, *,
         normalization=None) -> StepResult:
    """ZOGY difference with the noise read from the data and S_corr normalised on source-free pixels.

    Each image's noise is measured on its own blank sky with its own PSF
    (:func:`astrid_pipeline.science.noise.image_noise`): the background map,
    and the correlation factor k by which resampling raises the
    matched-filter noise. ZOGY gets the white-noise-equivalent sigma
    (sqrt(k) x the pixel noise) and per-pixel variances (error map, or
    background plus sources' Poisson noise with the gain in electrons per
    image unit, or background only when no gain is known), all times k.
    S_corr is then divided by its robust std on source-free pixels, globally
    and in tiles (``normalization``: a
    :class:`~astrid_pipeline.science.zogy.ScorrNormSettings`), and the flux
    errors multiplied by the same factor; SCNORM records it, SCHOLD the std
    on held-out blank pixels.
    """
    from scipy import ndimage

    from astrid_pipeline.science.noise import image_noise, variance_map
    from astrid_pipeline.science.stats import robust_std
    from astrid_pipeline.science.zogy import ScorrNormSettings, normalize_scorr, zogy_difference

    cfg = normalization or ScorrNormSettings()
    N, R, h = read_normalized(layout, region)
    pn, pr = read_psfs(layout, region)
    al_p = layout.aligned_reference(region)
    al_hdr = read_header(al_p)
    ratio = float(h["FLXRATIO"])
    bad = ~np.isfinite(N) | ~np.isfinite(R)
    err_n = read_error_sigma(layout.raw_image(region, "science"), N.shape)
    err_r = read_error_sigma(al_p, R.shape)
    nn = image_noise(N, bad, pn.stamp, err_n, fwhm=float(pn.fwhm))
    nr = image_noise(R, bad, pr.stamp, None if err_r is None else err_r * ratio, fwhm=float(pr.fwhm))
    gn = float(h.get("GAINSCI", -1.0))
    gr = float(h.get("GAINREF", -1.0))
    gn, gr = (gn if gn > 0 else None), (gr if gr > 0 else None)
    var_n = variance_map(N, pn.stamp, nn, gn, source_noise=use_source_noise)
    # R is reference counts times ratio, so its Poisson variance is ratio * R / gain_ref
    var_r = variance_map(R, pr.stamp, nr, gr, scale=ratio, source_noise=use_source_noise)
    ast = (0.0, 0.0)
    if use_astrometric_noise:
        ast = tuple(max(float(al_hdr.get(k, 0.0)), 0.0) for k in ("ALNRMSX", "ALNRMSY"))
    res = zogy_difference(N, R, pn.stamp, pr.stamp, nn.sigma_eff, nr.sigma_eff, var_n=var_n, var_r=var_r,
                          astrometric_sigma=ast, mask=bad)
    has_err_n = err_n is not None
    del var_n, var_r, err_n, err_r  # (peak memory: the variance and error maps are not needed any more)
    # source-free pixels for the normalisation: blank in both images, away from masked pixels and the borders
    fwhm = max(float(pn.fwhm), float(pr.fwhm), 1.0)
    usable = nn.blank & nr.blank & ~ndimage.binary_dilation(bad, iterations=int(np.ceil(2 * fwhm)))
    edge = max(res.psf_D.shape[0] // 2, int(np.ceil(3 * fwhm)))
    usable[:edge] = usable[-edge:] = False
    usable[:, :edge] = usable[:, -edge:] = False
    norm = normalize_scorr(res.S_corr, usable, res.psf_D, cfg)
    S_corr, flux_err = res.S_corr, res.flux_err
    if cfg.enabled:
        S_corr = (S_corr / norm.factor).astype(np.float32)
        flux_err = (flux_err * norm.factor).astype(np.float32)
    noise_sc = robust_std(S_corr[::2, ::2][~bad[::2, ::2]])
    noise_hold = norm.noise_holdout if cfg.enabled else norm.noise_holdout * norm.global_factor
    sci_unit = bunit_of(h)
    flux_unit = sci_unit or "adu"
    mjd = float(h.get("MJD-OBS", np.nan)) if "MJD-OBS" in h else np.nan
    kw = {
        "DIFFMETH": ("ZOGY", "Zackay, Ofek & Gal-Yam 2016"),
        "BUNIT": ("", "dimensionless: ZOGY proper image D (units of its noise)"),
        "F_D": (res.F_D, "flux zero point of D"),
        "F_S": (res.F_S, "flux = S / F_S"),
        "NOISED": (res.noise_D, "std of D"),
        "NOISESC": (noise_sc, "std of S_corr (normalised)"),
        "ALNRMS": (float(al_hdr.get("ALNRMS", -1.0)), "[pix] alignment residual rms"),
        "FLXRATIO": (ratio, "sci counts per ref count"),
        "SIGMAN": (nn.sigma_eff, f"[{flux_unit}] sci white-equivalent noise, sqrt(k) x pix"),
        "SIGMAR": (nr.sigma_eff, f"[{flux_unit}] ref white-equivalent noise, sci units"),
        "NOISEPXN": (nn.sigma_pixel, f"[{flux_unit}] science pixel noise, blank sky"),
        "NOISEPXR": (nr.sigma_pixel, f"[{flux_unit}] reference pixel noise, blank sky"),
        "NOISECFN": (round(nn.k, 4), "science matched-filter correlation factor k"),
        "NOISECFR": (round(nr.k, 4), "reference matched-filter correlation factor k"),
        "NOISEAC1": (round(nn.correlation.autocorr_lag1, 4), "science lag-1 noise autocorrelation"),
        "NOISEACR": (round(nr.correlation.autocorr_lag1, 4), "reference lag-1 noise autocorrelation"),
        "NOISECRW": (bool(nn.crowded or nr.crowded), "crowded: noise includes confusion"),
        "GAINSCI": (gn if gn is not None else -1.0, "[e-/sci unit] -1 = unknown: no source noise"),
        "GAINREF": (gr if gr is not None else -1.0, "[e-/ref unit] -1 = unknown: no source noise"),
        "SRCNOISE": (bool(use_source_noise), "source Poisson noise in S_corr"),
        "ASTSIGX": (ast[0], "[pix] astrometric noise"),
        "ASTSIGY": (ast[1], "[pix] astrometric noise"),
        "MJD-OBS": (mjd if np.isfinite(mjd) else -1.0, "science MJD"),
        "REFMJD": (float(al_hdr.get("MJD-OBS", -1.0)) if "MJD-OBS" in al_hdr else -1.0, "reference MJD"),
        "SCNORMON": (bool(cfg.enabled), "S_corr normalisation applied"),
        **norm.header_cards(),
    }
    if "DATE-OBS" in h:
        kw["DATE-OBS"] = (h["DATE-OBS"], "science epoch")
    from astropy.wcs import WCS

    wcs = WCS(h).celestial
    dimless = "dimensionless: significance in units of its noise (sigma)"
    out = write_fits(layout.difference(region, "zogy"), res.D, wcs=wcs, step="zogy_difference",
                     inputs=[layout.normalized_image(region, "science"), layout.normalized_image(region, "reference")],
                     extensions=[("SCORR", S_corr, unit_header("", dimless)),
                                 ("S", res.S, unit_header("", "dimensionless: ZOGY score S (flux = S / F_S)")),
                                 ("FLUX", res.flux, unit_header(flux_unit, "PSF flux (sum over the PSF's pixels)")),
                                 ("FLUXERR", flux_err, unit_header(flux_unit, "1-sigma error of FLUX")),
                                 ("PSF_D", res.psf_D, unit_header("", "dimensionless: PSF of D, unit sum"))],
                     keywords=kw)
    meta = dict(noise_D=res.noise_D, noise_S_corr=noise_sc, noise_S_corr_holdout=noise_hold,
                scorr_norm=norm.global_factor, scorr_norm_min=norm.factor_min, scorr_norm_max=norm.factor_max,
                scorr_norm_pixels=norm.n_used, scorr_holdout_pixels=norm.n_holdout, scorr_norm_tile=norm.tile,
                scorr_norm_block=norm.block, F_D=res.F_D, F_S=res.F_S,
                alignment_rms=float(al_hdr.get("ALNRMS", -1.0)), flux_ratio=ratio,
                correlation_factor_science=nn.k, correlation_factor_reference=nr.k,
                autocorr_lag1_science=nn.correlation.autocorr_lag1,
                autocorr_lag1_reference=nr.correlation.autocorr_lag1,
                sigma_science=nn.sigma_pixel, sigma_reference=nr.sigma_pixel, gain_science=gn, gain_reference=gr,
                source_noise=bool(use_source_noise and (gn is not None or has_err_n)))
    return StepResult({"zogy_difference": out}, meta)


def classic(layout: DataLayout, region: str) -> StepResult:
    from astrid_pipeline.science.classic import classic_difference

    N, R, h = read_normalized(layout, region)
    pn, pr = read_psfs(layout, region)
    res = classic_difference(N, R, pn.stamp, pr.stamp, pn.fwhm, pr.fwhm)
    from astropy.wcs import WCS

    unit = bunit_of(h)
    kw = {"DIFFMETH": ("CLASSIC", "PSF-matched subtraction"), "CONVOLVD": (res.convolved, "image convolved"),
          "NOISED": (res.noise, f"[{unit or 'adu'}] robust std of D"),
          "BUNIT": unit_card(unit, "science units"), **time_cards(h)}
    out = write_fits(layout.difference(region, "classic"), res.D, wcs=WCS(h).celestial, step="classic_difference",
                     extensions=[("KERNEL", res.kernel, unit_header("", "dimensionless: matching kernel"))],
                     keywords=kw,
                     inputs=[layout.normalized_image(region, "science"), layout.normalized_image(region, "reference")])
    return StepResult({"classic_difference": out}, dict(noise=res.noise, convolved=res.convolved))


# --------------------------------------------------------------------------- 5. candidates
def candidates(layout: DataLayout, region: str, config=None) -> StepResult:
    from astrid_pipeline.io.parquet_io import read_partitioned
    from astrid_pipeline.science.evaluation import label_cosmic_rays, match_truth, recovery_summary
    from astrid_pipeline.science.extraction import extract_candidates

    sci, aligned, al_hdr, bad, outside, badref, satref = read_pair_inputs(layout, region)
    del aligned, bad  # (not needed here: freed before the difference planes are read, for the peak memory)
    # the science image's own no-data regions (NaN borders of a mosaic) are edges too, not bad pixels
    from scipy import ndimage

    nodata = ndimage.binary_opening(~np.isfinite(sci.data), structure=np.ones((3, 3), bool))
    edge_map = outside | nodata
    zp = layout.difference(region, "zogy")
    hz = open_fits(zp)
    try:
        D = np.array(hz[0].data)
        Sc = np.array(hz["SCORR"].data)
        flux = np.array(hz["FLUX"].data)
        ferr = np.array(hz["FLUXERR"].data)
        psf_D = np.array(hz["PSF_D"].data)
        zh = hz[0].header.copy()
    finally:
        hz.close()
    from astropy.wcs import WCS

    wcs = WCS(zh).celestial
    R, nh = read_normalized(layout, region)[1:]
    pn, pr = read_psfs(layout, region)
    Dc = read_ext(layout.difference(region, "classic"), "PRIMARY")
    ch = read_header(layout.difference(region, "classic"))
    # the reference's PSF-flux noise: its white-equivalent noise (correlation included) over sqrt(sum P^2)
    sig_r = float(zh.get("SIGMAR", nh["RMSREF"]))
    ref_err = sig_r / np.sqrt(float((np.asarray(pr.stamp, float) ** 2).sum() / float(np.sum(pr.stamp)) ** 2))
    cands = extract_candidates(
        Sc, D, flux, ferr, psf_D, wcs, pn.fwhm,
        sharpness_image=Dc, sharpness_noise=float(ch.get("NOISED", 1.0)), psf_science=pn.render(0, 0, 7),
        reference=R, reference_err=ref_err,
        psf_reference=pr, saturated=saturation_map(sci) | satref, bad_pixels=(sci.mask | badref) & ~edge_map,
        outside=edge_map, config=config,
    )
    cands["region"] = region
    cands["clean"] = cands["flags"] == 0
    cands["mjd"] = float(sci.header.get("MJD-OBS", np.nan))
    cands["truth_id"] = ""
    cands["label"] = "unknown"
    meta: dict[str, Any] = {"n_candidates": int(len(cands)), "n_clean": int(cands["clean"].sum()),
                            "n_positive": int((cands["sign"] > 0).sum()) if len(cands) else 0,
                            "n_negative": int((cands["sign"] < 0).sum()) if len(cands) else 0}
    truth_path = layout.catalog("transient_truth", {"region": region})
    if truth_path.exists():
        truth = read_partitioned(layout.root, "transient_truth", {"region": region})
        tm, cl = match_truth(cands, truth, radius=max(3.0, pn.fwhm))
        crp = layout.catalog("sim_cosmic_rays", {"region": region})
        if crp.exists():
            cl = label_cosmic_rays(cl, read_partitioned(layout.root, "sim_cosmic_rays", {"region": region}))
        cands = cl
        summ = recovery_summary(tm, cl, snr_limit=5.0)
        meta["recovery"] = summ.as_dict()
        bright = tm["expected_snr"] >= 6.0
        meta["completeness_snr_ge_6"] = float(tm.loc[bright, "recovered"].mean()) if bright.any() else 1.0
        # what the noise allows: a source of true S/N s peaks above the threshold t with probability Phi(s - t)
        from math import erf, sqrt

        thr = float(getattr(config, "threshold", 5.0)) if config is not None else 5.0
        p_det = [0.5 * (1.0 + erf((float(v) - thr) / sqrt(2.0))) for v in tm.loc[bright, "expected_snr"]]
        meta["n_snr_ge_6"] = int(bright.sum())
        meta["expected_completeness_snr_ge_6"] = float(np.mean(p_det)) if p_det else 1.0
        meta["false_per_mpix"] = summ.false_positives / (sci.data.size / 1e6)
        meta["missed"] = tm.loc[~tm["recovered"], ["transient_id", "type", "expected_snr"]].to_dict("records")
    meta["flux_unit"] = bunit_of(sci.header) or "unknown"
    out = write_partitioned(cands, layout.root, "candidates", {"region": region},
                            candidate_schema(bunit_of(sci.header)))
    return StepResult({"candidates": out}, meta)


# --------------------------------------------------------------------------- 6. triplets
def triplets(layout: DataLayout, region: str, size: int = 63, difference: str = "zogy", max_triplets: int | None = None) -> StepResult:
    from astrid_pipeline.io.hdf5_io import open_atomic_hdf5, write_dataset, write_table_group
    from astrid_pipeline.io.parquet_io import read_partitioned
    from astrid_pipeline.science.cutouts import make_triplets

    cands = read_partitioned(layout.root, "candidates", {"region": region})
    if max_triplets is not None:
        cands = cands.head(max_triplets)
    N, R, h = read_normalized(layout, region)
    unit = bunit_of(h) or "unknown"
    if difference == "zogy":
        Dimg = read_ext(layout.difference(region, "zogy"), "PRIMARY")
        dunit = "D (dimensionless ZOGY proper difference, in units of its noise)"
    elif difference == "classic":
        Dimg = read_ext(layout.difference(region, "classic"), "PRIMARY")
        dunit = unit
    else:
        raise ValueError(f"difference must be 'zogy' or 'classic', got {difference!r}")
    trip, edge = make_triplets(N, R, Dimg, cands["x"].values, cands["y"].values, size)
    table = {
        "candidate_id": cands["candidate_id"].values.astype(np.int64),
        "x": cands["x"].values, "y": cands["y"].values, "ra": cands["ra"].values, "dec": cands["dec"].values,
        "snr": cands["snr"].values, "flux": cands["flux"].values, "flags": cands["flags"].values.astype(np.int32),
        "mjd": cands["mjd"].values, "edge_padded": edge, "label": cands["label"].astype(str).values,
        "truth_id": cands["truth_id"].astype(str).values,
    }
    path = layout.triplets(region)
    with open_atomic_hdf5(path, step="cutout_triplets", attrs={"region": region, "size": size,
                                                               "difference": difference}) as f:
        write_dataset(f, "triplets", trip, chunks=(1, 3, size, size) if len(trip) else True,
                      unit=f"{unit} (science, reference); " + dunit,
                      description="(N, 3, H, W): science, reference (aligned, flux-matched), difference; NaN beyond the image edge",
                      attrs={"planes": ["science", "reference", "difference"]})
        write_table_group(f, "metadata", table, units={"x": "pix", "y": "pix", "ra": "deg", "dec": "deg", "flux": unit, "mjd": "d"})
    preview = None
    if len(trip):
        preview = layout.preview(region, "triplets")
        # clean candidates first: they are what a person wants to look at
        order = np.argsort(table["flags"] != 0, kind="stable")[: min(6, len(trip))]
        previews.render_triplet_preview(trip[order], {k: np.asarray(v)[order] for k, v in table.items()}, preview)
    return StepResult({"triplets": path, **({"preview": preview} if preview else {})},
                      dict(n_triplets=int(len(trip)), n_edge_padded=int(edge.sum()), size=size))
