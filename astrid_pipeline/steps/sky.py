"""The sky branch as plain functions over the data layout (no Dagster here).

Each step reads the products of the previous ones from the data root, calls
the science code, writes its own products atomically and returns a
:class:`StepResult` with the paths and the numbers worth showing. The Dagster
assets call these one-to-one; a notebook or the CLI can call them too.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
from astropy.io import fits

from astrid_pipeline.archives.base import ArchivePair
from astrid_pipeline.errors import InputFileError
from astrid_pipeline.io.atomic import atomic_path
from astrid_pipeline.io.fits_io import SkyImage, exptime_of, open_fits, read_sky_image, write_fits
from astrid_pipeline.io.parquet_io import Column, make_schema, write_partitioned
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
    Column("sign", pa.int8(), "", "+1 brighter in the science image, -1 fainter"),
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
    Column("flux", pa.float64(), "adu", "PSF flux of the change, S/F_S, in science counts"),
    Column("flux_err", pa.float64(), "adu", "1-sigma error of flux (source, background and astrometric noise)"),
    Column("snr", pa.float64(), "", "peak S_corr: signed significance"),
    Column("sign", pa.int8(), "", "+1 brighter in the science image, -1 fainter"),
    Column("a", pa.float64(), "pix", "major-axis sigma from weighted moments of D"),
    Column("b", pa.float64(), "pix", "minor-axis sigma"),
    Column("theta", pa.float64(), "rad", "major-axis angle from +x towards +y"),
    Column("fwhm", pa.float64(), "pix", "FWHM equivalent of (a, b)"),
    Column("ellipticity", pa.float64(), "", "1 - b/a"),
    Column("npix", pa.int64(), "pix", "pixels in the S_corr segment"),
    Column("flags", pa.int32(), "", "bit flags: 1=edge 2=saturated 4=bad_pixel 8=dipole 16=bright_star 32=sharp"),
    Column("clean", pa.bool_(), "", "flags == 0: a clean transient candidate"),
    Column("edge", pa.bool_(), "", "near the border or the reference footprint edge"),
    Column("saturated", pa.bool_(), "", "saturated pixel nearby"),
    Column("bad_pixel", pa.bool_(), "", "masked pixel nearby"),
    Column("dipole", pa.bool_(), "", "opposite-sign lobe next to it"),
    Column("bright_star", pa.bool_(), "", "small change on a bright reference source"),
    Column("sharp", pa.bool_(), "", "sharper than the PSF (cosmic ray, hot pixel)"),
    Column("reference_flux", pa.float64(), "adu", "PSF flux in the scaled reference at the position"),
    Column("neighbour_ratio", pa.float64(), "", "sharpness statistic (neighbours / peak) in the classic difference"),
    Column("mjd", pa.float64(), "d", "science MJD"),
    Column("truth_id", pa.string(), "", "matched injected transient (simulated data), else empty"),
    Column("label", pa.string(), "", "truth type, cosmic_ray, bogus or artifact (simulated); unknown on real data"),
])


# --------------------------------------------------------------------------- helpers
def _relabel(exc: InputFileError, source: str) -> InputFileError:
    """The same error, naming the file the archive gave us rather than our temporary copy."""
    return type(exc)(source, exc.reason)


def _gain(header, default=1.0) -> float:
    try:
        g = float(header.get("GAIN", default))
        return g if g > 0 and np.isfinite(g) else default
    except (TypeError, ValueError):
        return default


def _saturation_map(img: SkyImage, margin: float = 0.98) -> np.ndarray:
    sat = img.extras.get("saturate")
    out = np.zeros(img.shape, bool)
    if sat is not None and np.isfinite(sat) and sat > 0:
        out |= np.nan_to_num(img.data, nan=0.0) >= margin * sat
    return out


def _read_ext(path: Path, name: str) -> np.ndarray:
    hdul = open_fits(path)
    try:
        if name not in hdul:
            raise InputFileError(path, f"has no {name} extension")
        return np.array(hdul[name].data)
    finally:
        hdul.close()


def _header(path: Path, ext=0) -> fits.Header:
    hdul = open_fits(path)
    try:
        return hdul[ext].header.copy()
    finally:
        hdul.close()


def _read_psfs(layout: DataLayout, region: str):
    from astrid_pipeline.science.psf import PSFModel

    hdul = open_fits(layout.psf_models(region))
    try:
        out = {}
        for name in ("PSF_SCI", "PSF_REF"):
            h = hdul[name].header
            out[name] = PSFModel(np.array(hdul[name].data, dtype=np.float32), float(h["FWHM"]), float(h["BETA"]),
                                 int(h["NSTAR"]), float(h["PSFELL"]), str(h["PSFMETH"]), float(h.get("PSFTHETA", 0.0)))
        return out["PSF_SCI"], out["PSF_REF"]
    finally:
        hdul.close()


# --------------------------------------------------------------------------- 0. acquisition
def acquire(layout: DataLayout, region: str, pair: ArchivePair) -> StepResult:
    """Validate the fetched pair and write it (both files or neither) with provenance."""
    paths = {e: layout.raw_image(region, e) for e in ("science", "reference")}
    with contextlib.ExitStack() as stack:
        tmps = {e: stack.enter_context(atomic_path(p)) for e, p in paths.items()}
        info = {}
        for epoch, hdul, source in (("science", pair.science, pair.science_source),
                                    ("reference", pair.reference, pair.reference_source)):
            hdr = hdul[0].header
            hdr["ARCHIVE"] = (str(pair.provenance.get(f"{epoch}_archive", pair.provenance.get("archive", "unknown"))),
                              "where this image came from")
            hdr["SRCFILE"] = Path(str(source)).name[:68]
            hdr["ASTREPCH"] = (epoch, "role in the pair")
            hdr.add_history(f"acquired by astrid-pipeline for region {region} from {source}")
            hdul.writeto(tmps[epoch], output_verify="silentfix")
            try:
                img = read_sky_image(tmps[epoch], require_exptime=True)
            except InputFileError as exc:
                raise _relabel(exc, source) from exc
            info[epoch] = img
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
    if pair.truth is not None:
        t = pair.truth.copy()
        t["region"] = region
        paths["truth"] = write_partitioned(t, layout.root, "transient_truth", {"region": region}, TRUTH_SCHEMA)
        meta["n_injected"] = int(len(t))
    if pair.cosmic_rays is not None:
        paths["cosmic_rays"] = write_partitioned(pair.cosmic_rays, layout.root, "sim_cosmic_rays", {"region": region}, CR_SCHEMA)
        meta["n_cosmic_rays"] = int(len(pair.cosmic_rays))
    return StepResult(paths, meta)


# --------------------------------------------------------------------------- 1. alignment
def align(layout: DataLayout, region: str, order: str = "bicubic", refine: bool = True) -> StepResult:
    from astrid_pipeline.science.alignment import align_to_grid

    sci_p, ref_p = layout.raw_image(region, "science"), layout.raw_image(region, "reference")
    sci = read_sky_image(sci_p)
    ref = read_sky_image(ref_p)
    res = align_to_grid(ref.data, ref.wcs, sci.wcs, sci.shape, ref.mask, sci.data, sci.mask, order=order,
                        refine=refine, saturation=sci.extras.get("saturate"), path=str(ref_p),
                        ref_saturated=_saturation_map(ref))
    qa = res.qa()
    hdr = ref.header.copy()
    for k in list(hdr.keys()):
        if k.startswith(("NAXIS", "CRPIX", "CRVAL", "CTYPE", "CDELT", "CUNIT", "CD1_", "CD2_", "PC", "A_", "B_", "AP_", "BP_", "PV", "LONPOLE", "LATPOLE", "WCSAXES", "RADESYS", "EQUINOX")):
            del hdr[k]
    kw = {
        "ALNFOOT": (round(qa["footprint_fraction"], 6), "grid fraction covered by the reference"),
        "ALNDX": (round(qa["residual_dx"], 5), "[pix] median star offset x after alignment"),
        "ALNDY": (round(qa["residual_dy"], 5), "[pix] median star offset y after alignment"),
        "ALNRMS": (round(qa["residual_rms"], 5) if np.isfinite(qa["residual_rms"]) else -1.0, "[pix] rms of matched-star offsets"),
        "ALNRMSX": (round(qa["residual_rms_x"], 5) if np.isfinite(qa["residual_rms_x"]) else -1.0, "[pix]"),
        "ALNRMSY": (round(qa["residual_rms_y"], 5) if np.isfinite(qa["residual_rms_y"]) else -1.0, "[pix]"),
        "ALNNMAT": (qa["n_matched"], "stars matched"),
        "ALNSHFX": (round(qa["shift_x"], 5), "[pix] refinement shift applied in x"),
        "ALNSHFY": (round(qa["shift_y"], 5), "[pix] refinement shift applied in y"),
        "ALNORDER": (order, "interpolation"),
    }
    sat = res.saturated if res.saturated is not None else np.zeros(sci.shape, bool)
    outside = res.outside if res.outside is not None else res.mask
    out = write_fits(layout.aligned_reference(region), res.data.astype(np.float32), header=hdr, wcs=sci.wcs,
                     extensions=[("OUTSIDE", outside.astype(np.uint8), None),
                                 ("BADPIX", (res.mask & ~outside).astype(np.uint8), None),
                                 ("SATMASK", sat.astype(np.uint8), None)],
                     step="aligned_reference", inputs=[sci_p, ref_p], keywords=kw)
    return StepResult({"aligned_reference": out}, qa)


def cosmic_ray_mask_path(layout: DataLayout, region: str) -> Path:
    """Where the science image's cosmic-ray mask lives (written by :func:`cosmic_ray_mask`)."""
    from astrid_pipeline.layout import safe_key

    return layout.root / "sky" / "crmask" / f"{safe_key(region)}.fits"


def _read_cr_mask(layout: DataLayout, region: str, shape) -> np.ndarray | None:
    """The science CR mask (bool) when one has been made for this region, else None."""
    p = cosmic_ray_mask_path(layout, region)
    if not p.exists():
        return None
    m = np.asarray(_read_ext(p, "PRIMARY"), bool)
    if m.shape != tuple(shape):
        raise InputFileError(p, f"CR mask shape {m.shape} differs from the science image {tuple(shape)}; "
                                "re-materialize cosmic_ray_mask")
    return m


def cosmic_ray_mask(layout: DataLayout, region: str, checkpoint: str | None = None, method: str = "auto",
                    threshold: float = 0.5, sigclip: float = 4.5, objlim: float = 5.0, sigfrac: float = 0.3) -> StepResult:
    """CR mask of the science image: a trained 2-D network if ``checkpoint`` exists, else L.A.Cosmic.

    Writes ``sky/crmask/<region>.fits`` (uint8 mask; a PROB extension with the
    network's probability when a model was used). The later steps treat the
    masked pixels as bad, so cosmic rays do not become candidates.
    """
    from astrid_pipeline.science.cosmic_rays.masks import detect_cosmic_rays

    sci_p = layout.raw_image(region, "science")
    sci = read_sky_image(sci_p)
    gain = _gain(sci.header)
    rn = sci.header.get("RDNOISE", sci.header.get("READNOIS", 5.0 * gain))
    try:
        rn = float(rn)
    except (TypeError, ValueError):
        rn = 5.0
    sat = sci.extras.get("saturate")
    data = np.where(sci.mask, np.nan, sci.data)  # known bad pixels (bad columns) are not CRs
    res = detect_cosmic_rays(data, method=method, checkpoint=checkpoint, threshold=threshold, gain=gain,
                             read_noise=rn / gain,  # RDNOISE is in electrons
                             saturation=0.98 * sat if sat else None,
                             lacosmic=dict(sigclip=sigclip, objlim=objlim, sigfrac=sigfrac))
    exts = [] if res.probability is None else [("PROB", res.probability.astype(np.float32), None)]
    kw = {"CRMETHOD": (res.method, "model or lacosmic"), "CRNPIX": (res.n_pixels, "pixels flagged"),
          "CRMODEL": (str(res.info.get("model", "L.A.Cosmic (astroscrappy)")), "detector")}
    out = write_fits(cosmic_ray_mask_path(layout, region), res.mask.astype(np.uint8), wcs=sci.wcs, extensions=exts,
                     step="cosmic_ray_mask", inputs=[sci_p], keywords=kw)
    meta = {"method": res.method, "n_cr_pixels": res.n_pixels, "cr_pixel_fraction": res.n_pixels / res.mask.size,
            "detector": kw["CRMODEL"][0]}
    return StepResult({"cosmic_ray_mask": out}, meta)


def _pair_inputs(layout: DataLayout, region: str):
    sci_p = layout.raw_image(region, "science")
    al_p = layout.aligned_reference(region)
    sci = read_sky_image(sci_p)
    cr = _read_cr_mask(layout, region, sci.shape)
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


# --------------------------------------------------------------------------- 2. PSFs
def measure_psfs(layout: DataLayout, region: str) -> StepResult:
    from astrid_pipeline.science.normalization import subtract_backgrounds
    from astrid_pipeline.science.psf import estimate_psf

    sci, aligned, al_hdr, bad, *_ = _pair_inputs(layout, region)
    s, r, sb, rb = subtract_backgrounds(sci.data, aligned, bad)
    sat = sci.extras.get("saturate")
    pn = estimate_psf(np.nan_to_num(s), sb.global_rms, bad, sat, path=sci.path)
    pr = estimate_psf(np.nan_to_num(r), rb.global_rms, bad, None if sat is None else sat / 1.0,
                      path=str(layout.aligned_reference(region)))
    size = int(max(pn.stamp.shape[0], pr.stamp.shape[0]))
    exts = []
    for name, m in (("PSF_SCI", pn), ("PSF_REF", pr)):
        stamp = m.render(0.0, 0.0, size).astype(np.float32)
        h = fits.Header()
        for k, v in m.as_header_cards().items():
            h[k] = v
        h["BETA"] = (float(m.beta) if np.isfinite(m.beta) else 99.0, "Moffat beta")
        h["PSFTHETA"] = (float(m.theta), "[rad] PSF major-axis angle")
        exts.append((name, stamp, h))
    out = write_fits(layout.psf_models(region), None, extensions=exts, step="psf_models",
                     inputs=[sci.path, layout.aligned_reference(region)])
    meta = dict(fwhm_science=pn.fwhm, fwhm_reference=pr.fwhm, beta_science=pn.beta, beta_reference=pr.beta,
                n_stars_science=pn.n_stars, n_stars_reference=pr.n_stars, method_science=pn.method,
                method_reference=pr.method, stamp_size=size)
    return StepResult({"psf_models": out}, meta)


# --------------------------------------------------------------------------- 3. normalization
def normalize(layout: DataLayout, region: str) -> StepResult:
    from astrid_pipeline.science.normalization import normalize_pair

    sci, aligned, al_hdr, bad, *_ = _pair_inputs(layout, region)
    ref_hdr = _header(layout.raw_image(region, "reference"))
    pn, pr = _read_psfs(layout, region)
    N, R, params = normalize_pair(sci.data, aligned, bad, pn, pr, sci.header, ref_hdr,
                                  saturation=sci.extras.get("saturate"))
    p = params.as_dict()
    kw = {
        "BKGSCI": (p["sci_background"], "[adu] science background"),
        "BKGREF": (p["ref_background"], "[ref adu] reference background"),
        "RMSSCI": (p["sci_rms"], "[adu] science background noise"),
        "RMSREF": (p["ref_rms"], "[adu] ref noise, science units"),
        "FLXRATIO": (p["flux_ratio"], "sci counts per ref count"),
        "FLXRERR": (p["flux_ratio_err"] if np.isfinite(p["flux_ratio_err"]) else -1.0, "error of FLXRATIO"),
        "FLXMETH": (p["method"], "how the flux ratio was found"),
        "FLXNSTAR": (p["n_stars"], "stars used for the flux ratio"),
        "GAINSCI": (_gain(sci.header), "[e-/adu] science gain"),
        "GAINREF": (_gain(ref_hdr), "[e-/adu] reference gain"),
    }
    out_s = write_fits(layout.normalized_image(region, "science"), N.astype(np.float32), header=sci.header,
                       wcs=sci.wcs, step="normalized_images", inputs=[sci.path], keywords=kw)
    out_r = write_fits(layout.normalized_image(region, "reference"), R.astype(np.float32), wcs=sci.wcs,
                       step="normalized_images", inputs=[layout.aligned_reference(region)], keywords=kw)
    return StepResult({"science": out_s, "reference": out_r}, p)


def _normalized(layout: DataLayout, region: str):
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


# --------------------------------------------------------------------------- 4. differences
def zogy(layout: DataLayout, region: str, use_source_noise: bool = True, use_astrometric_noise: bool = True) -> StepResult:
    from astrid_pipeline.science.zogy import source_variance, zogy_difference

    N, R, h = _normalized(layout, region)
    pn, pr = _read_psfs(layout, region)
    al_hdr = _header(layout.aligned_reference(region))
    sn, sr = float(h["RMSSCI"]), float(h["RMSREF"])
    ratio = float(h["FLXRATIO"])
    var_n = var_r = None
    if use_source_noise:
        var_n = source_variance(N, pn.stamp, float(h["GAINSCI"]), sn)
        # R is reference counts times ratio, so its Poisson variance is ratio * R / gain_ref
        var_r = source_variance(R, pr.stamp, float(h["GAINREF"]), sr, scale=ratio)
    ast = (0.0, 0.0)
    if use_astrometric_noise:
        ast = tuple(max(float(al_hdr.get(k, 0.0)), 0.0) for k in ("ALNRMSX", "ALNRMSY"))
    res = zogy_difference(N, R, pn.stamp, pr.stamp, sn, sr, var_n=var_n, var_r=var_r, astrometric_sigma=ast,
                          mask=~np.isfinite(N) | ~np.isfinite(R))
    kw = {
        "DIFFMETH": ("ZOGY", "Zackay, Ofek & Gal-Yam 2016"),
        "F_D": (res.F_D, "flux zero point of D"),
        "F_S": (res.F_S, "flux = S / F_S"),
        "NOISED": (res.noise_D, "std of D"),
        "NOISESC": (res.noise_S_corr, "std of S_corr"),
        "ALNRMS": (float(al_hdr.get("ALNRMS", -1.0)), "[pix] alignment residual rms"),
        "FLXRATIO": (ratio, "sci counts per ref count"),
        "SIGMAN": (sn, "[adu] science background noise"),
        "SIGMAR": (sr, "[adu] ref noise, science units"),
        "ASTSIGX": (ast[0], "[pix] astrometric noise"),
        "ASTSIGY": (ast[1], "[pix] astrometric noise"),
        "MJD-OBS": (float(h.get("MJD-OBS", np.nan)) if np.isfinite(float(h.get("MJD-OBS", np.nan))) else -1.0, "science MJD"),
    }
    from astropy.wcs import WCS

    wcs = WCS(h).celestial
    out = write_fits(layout.difference(region, "zogy"), res.D, wcs=wcs, step="zogy_difference",
                     inputs=[layout.normalized_image(region, "science"), layout.normalized_image(region, "reference")],
                     extensions=[("SCORR", res.S_corr, None), ("S", res.S, None), ("FLUX", res.flux, None),
                                 ("FLUXERR", res.flux_err, None), ("PSF_D", res.psf_D, None)],
                     keywords=kw)
    meta = dict(noise_D=res.noise_D, noise_S_corr=res.noise_S_corr, F_D=res.F_D, F_S=res.F_S,
                alignment_rms=float(al_hdr.get("ALNRMS", -1.0)), flux_ratio=ratio)
    return StepResult({"zogy_difference": out}, meta)


def classic(layout: DataLayout, region: str) -> StepResult:
    from astrid_pipeline.science.classic import classic_difference

    N, R, h = _normalized(layout, region)
    pn, pr = _read_psfs(layout, region)
    res = classic_difference(N, R, pn.stamp, pr.stamp, pn.fwhm, pr.fwhm)
    from astropy.wcs import WCS

    kw = {"DIFFMETH": ("CLASSIC", "PSF-matched subtraction"), "CONVOLVD": (res.convolved, "image convolved"),
          "NOISED": (res.noise, "[adu] robust std of D")}
    out = write_fits(layout.difference(region, "classic"), res.D, wcs=WCS(h).celestial, step="classic_difference",
                     extensions=[("KERNEL", res.kernel, None)], keywords=kw,
                     inputs=[layout.normalized_image(region, "science"), layout.normalized_image(region, "reference")])
    return StepResult({"classic_difference": out}, dict(noise=res.noise, convolved=res.convolved))


# --------------------------------------------------------------------------- 5. candidates
def candidates(layout: DataLayout, region: str, config=None) -> StepResult:
    from astrid_pipeline.io.parquet_io import read_partitioned
    from astrid_pipeline.science.evaluation import label_cosmic_rays, match_truth, recovery_summary
    from astrid_pipeline.science.extraction import extract_candidates

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
    sci, aligned, al_hdr, bad, outside, badref, satref = _pair_inputs(layout, region)
    _, R, nh = _normalized(layout, region)
    pn, pr = _read_psfs(layout, region)
    Dc = _read_ext(layout.difference(region, "classic"), "PRIMARY")
    ch = _header(layout.difference(region, "classic"))
    cands = extract_candidates(
        Sc, D, flux, ferr, psf_D, wcs, pn.fwhm,
        sharpness_image=Dc, sharpness_noise=float(ch.get("NOISED", 1.0)), psf_science=pn.render(0, 0, 7),
        reference=R, reference_err=float(nh["RMSREF"]) * np.sqrt(4 * np.pi * (pr.fwhm / 2.3548) ** 2),
        psf_reference=pr, saturated=_saturation_map(sci) | satref, bad_pixels=(sci.mask | badref) & ~outside,
        outside=outside, config=config,
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
        meta["false_per_mpix"] = summ.false_positives / (sci.data.size / 1e6)
        meta["missed"] = tm.loc[~tm["recovered"], ["transient_id", "type", "expected_snr"]].to_dict("records")
    out = write_partitioned(cands, layout.root, "candidates", {"region": region}, CANDIDATE_SCHEMA)
    return StepResult({"candidates": out}, meta)


# --------------------------------------------------------------------------- 6. triplets
def triplets(layout: DataLayout, region: str, size: int = 63, difference: str = "zogy", max_triplets: int | None = None) -> StepResult:
    from astrid_pipeline.io.hdf5_io import open_atomic_hdf5, write_dataset, write_table_group
    from astrid_pipeline.io.parquet_io import read_partitioned
    from astrid_pipeline.science.cutouts import make_triplets

    cands = read_partitioned(layout.root, "candidates", {"region": region})
    if max_triplets is not None:
        cands = cands.head(max_triplets)
    N, R, h = _normalized(layout, region)
    if difference == "zogy":
        Dimg = _read_ext(layout.difference(region, "zogy"), "PRIMARY")
        dunit = "D (unit-variance ZOGY proper difference)"
    elif difference == "classic":
        Dimg = _read_ext(layout.difference(region, "classic"), "PRIMARY")
        dunit = "adu"
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
                      unit="adu (science, reference); " + dunit,
                      description="(N, 3, H, W): science, reference (aligned, flux-matched), difference; NaN beyond the image edge",
                      attrs={"planes": ["science", "reference", "difference"]})
        write_table_group(f, "metadata", table, units={"x": "pix", "y": "pix", "ra": "deg", "dec": "deg", "flux": "adu", "mjd": "d"})
    preview = None
    if len(trip):
        preview = layout.preview(region, "triplets")
        # clean candidates first: they are what a person wants to look at
        order = np.argsort(table["flags"] != 0, kind="stable")[: min(6, len(trip))]
        render_triplet_preview(trip[order], {k: np.asarray(v)[order] for k, v in table.items()}, preview)
    return StepResult({"triplets": path, **({"preview": preview} if preview else {})},
                      dict(n_triplets=int(len(trip)), n_edge_padded=int(edge.sum()), size=size))


def render_triplet_preview(trip: np.ndarray, table: dict, path: Path) -> Path:
    """A PNG grid of the first triplets (science, reference, difference per row)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(trip)
    fig, axes = plt.subplots(n, 3, figsize=(6, 2 * n), squeeze=False)
    for i in range(n):
        for j, title in enumerate(("science", "reference", "difference")):
            ax = axes[i, j]
            im = trip[i, j]
            finite = im[np.isfinite(im)]
            lo, hi = (np.percentile(finite, [1, 99.5]) if finite.size else (0, 1))
            ax.imshow(im, origin="lower", cmap="gray", vmin=lo, vmax=hi)
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(title, fontsize=9)
        axes[i, 0].set_ylabel(f"#{table['candidate_id'][i]} S/N={table['snr'][i]:.1f}\n{table['label'][i]}", fontsize=7)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=80)
    plt.close(fig)
    return path


def difference_thumbnail(layout: DataLayout, region: str, size: int = 512) -> Path:
    """A PNG thumbnail of S_corr with clean candidates circled."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from astrid_pipeline.io.parquet_io import read_partitioned

    sc = _read_ext(layout.difference(region, "zogy"), "SCORR")
    cands = read_partitioned(layout.root, "candidates", {"region": region})
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.imshow(sc, origin="lower", cmap="gray", vmin=-5, vmax=8)
    if len(cands):
        c = cands[cands["clean"]]
        ax.scatter(c["x"], c["y"], s=60, facecolors="none", edgecolors="lime", linewidths=0.8, label="clean")
        f = cands[~cands["clean"]]
        ax.scatter(f["x"], f["y"], s=30, marker="x", color="red", linewidths=0.6, label="flagged")
        ax.legend(loc="upper right", fontsize=7)
    ax.set_title(f"{region}: S_corr", fontsize=9)
    path = layout.preview(region, "scorr")
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=max(60, size // 5))
    plt.close(fig)
    return path


def default_cr_checkpoint(layout: DataLayout, model: str = "deepcr", checkpoint: str = "",
                          use_shipped: bool = True) -> str | None:
    """The CR model to use: an explicit checkpoint, else the trained ``cr_model`` of that name,
    else the packaged weights (when allowed), else None (L.A.Cosmic)."""
    if checkpoint:
        return checkpoint
    trained = layout.model_dir(f"cr2d_{model}") / "model.pt"
    if trained.exists():
        return str(trained)
    if use_shipped:
        from astrid_pipeline.ml.weights_path import SHIPPED_WEIGHTS

        if SHIPPED_WEIGHTS.exists():
            return str(SHIPPED_WEIGHTS)
    return None


def run_region(layout: DataLayout, region: str, pair: ArchivePair, call=None) -> dict[str, StepResult]:
    """Every sky step for one region, in order, with default settings: the one list of the branch's steps.

    ``call(fn, *args, **kwargs)`` wraps each step (e.g. to time it); the
    Dagster assets run the same functions one asset at a time.
    """
    call = call or (lambda fn, *a, **k: fn(*a, **k))
    out: dict[str, StepResult] = {}
    out["acquire"] = call(acquire, layout, region, pair)
    ck = default_cr_checkpoint(layout)
    out["cosmic_ray_mask"] = call(cosmic_ray_mask, layout, region, checkpoint=ck, method="model" if ck else "lacosmic")
    for name, fn in STEPS_AFTER_MASK:
        out[name] = call(fn, layout, region)
    return out


#: the steps after acquisition and the cosmic-ray mask, in order, with their short names
STEPS_AFTER_MASK = (("align", align), ("psf", measure_psfs), ("normalize", normalize), ("zogy", zogy),
                    ("classic", classic), ("candidates", candidates), ("triplets", triplets))
