"""The real/bogus training set: science / reference / difference triplets from many small simulated regions.

:func:`build_triplet_training_set` simulates ``n_regions`` small sky regions
(:class:`~astrid_pipeline.archives.simulated.SimulatedSurvey`, each at its
own random sky position, seeing, depth and star density, all from one seed),
perturbs some of their inputs the way real data go wrong, runs the sky
branch on each (``run_chain``: :func:`astrid_pipeline.sky.chain.run_sky_chain`),
and keeps every candidate's 63x63 triplet with its label:

- **real** (label 1): candidates matched to the truth table; their ``type``
  is the truth type (supernova, variable, nova, asteroid, asteroid_trailed)
  and the measured S/N (``snr``) and expected S/N (``expected_snr``: the
  ZOGY-optimal S/N of the injected change) are their own columns, since
  "faint" is a range of S/N, not a type (the survey's ``faint`` injections
  are off: every type spans the S/N range);
- **bogus** (label 0), typed by what made them:

  ============== ==============================================================
  cosmic_ray     hits added to the science exposure (the ones the CR mask
                 misses) and to the template (Zhang & Bloom 2020 shapes:
                 spots, tracks, worms; :func:`~astrid_pipeline.science.cosmic_rays.simulate.add_cosmic_rays`)
  dipole         the template's WCS rotated by 0.08-0.3 deg and shifted by up
                 to 0.6 px (a bad astrometric solution: misaligned stars), or
                 part of the template shifted by 0.3-1.0 px (a local
                 registration error, as uncorrected distortion leaves)
  psf_mismatch   part of the science exposure blurred by an anisotropic
                 Gaussian (a PSF that varies across the field)
  bad_column     column segments and dead columns not in the bad-pixel mask
  hot_pixel      single hot pixels not in the mask
  saturated_star the science exposure saturating low (3000-15000 ADU), with or
                 without a SATURATE keyword
  noise_peak     local maxima of S_corr at 3.8-5 sigma away from any source
  residual       any other unmatched candidate (star and galaxy subtraction
                 residuals, e.g. from a flux-scale error)
  ============== ==============================================================

Regions are split into train / val / test **by region** (no region gives
samples to two splits). For an evaluation on a seed the training never saw,
build a second set with another ``seed`` and ``test_fraction=1``. The HDF5
file holds ``triplets`` (N, 3, 63, 63) float32 (science, reference,
difference; NaN beyond the image edge) and one 1-D dataset per column
(``label``, ``type``, ``type_index``, ``snr``, ``expected_snr``, ``sign``,
``flags``, ``region``, ``split``, ``x``, ``y``, ``candidate_id``); class
balance and sizes are in the returned metadata and the file attributes.
Memory is bounded by one region: triplets are appended region by region.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from typing import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from astrid_pipeline.errors import ConfigError
from astrid_pipeline.ml.realbogus.dataset import ALL_TYPES, BOGUS_TYPES, COLUMNS, REAL_TYPES, summarize_table
from astrid_pipeline.setting import setting



@dataclass
class TripletSetConfig:
    """How the real/bogus triplet set is simulated (every field is a setting of the training-set asset)."""

    n_regions: int = setting(300, "simulated regions (each one sky field, its transients and perturbations)")
    seed: int = setting(1, "seed of everything: positions, survey parameters, perturbations, splits")
    val_fraction: float = setting(0.15, "share of regions in the validation split")
    test_fraction: float = setting(0.0, "share of regions in the test split (1.0: a pure test set from an unseen seed)")
    image_size: int = setting(256, "side of each simulated region (px)")
    stamp_size: int = setting(63, "triplet side (px), as ZTF's alert stamps")
    p_science_crs: float = setting(0.6, "probability that a region's science exposure gets extra cosmic rays")
    p_template_crs: float = setting(0.5, "probability of cosmic rays in the template")
    p_bad_pixels: float = setting(0.5, "probability of unmasked bad columns and hot pixels")
    p_saturation: float = setting(0.4, "probability of a low saturation level")
    p_psf_variation: float = setting(0.35, "probability of a blurred part of the science exposure")
    p_astrometry: float = setting(0.35, "probability of a wrong template WCS (rotation and shift)")
    p_misregistration: float = setting(0.0, "probability of a sub-pixel shift of part of the template")
    max_noise_peaks: int = setting(4, "S_corr noise peaks kept per region")
    border: int = setting(4, "candidates closer than this to the image border are dropped (stamps mostly outside)")
    keep_workdirs: bool = setting(False, "keep each region's sky-branch products (debugging)")

    def validate(self) -> "TripletSetConfig":
        if self.n_regions < 1:
            raise ConfigError(f"n_regions must be >= 1, got {self.n_regions}")
        if not (0 <= self.val_fraction <= 1 and 0 <= self.test_fraction <= 1
                and self.val_fraction + self.test_fraction <= 1):
            raise ConfigError(f"val_fraction {self.val_fraction} and test_fraction {self.test_fraction} must be in "
                              "[0, 1] and sum to at most 1")
        if self.image_size < 128:
            raise ConfigError(f"image_size {self.image_size} is below the simulated survey's 128 px minimum")
        if self.stamp_size < 15 or self.stamp_size % 2 == 0:
            raise ConfigError(f"stamp_size must be odd and >= 15, got {self.stamp_size}")
        for k in ("p_science_crs", "p_template_crs", "p_bad_pixels", "p_saturation", "p_psf_variation",
                  "p_astrometry", "p_misregistration"):
            if not 0 <= getattr(self, k) <= 1:
                raise ConfigError(f"{k} must be a probability, got {getattr(self, k)}")
        return self


# --------------------------------------------------------------------------- the adapter to the sky branch
@dataclass
class ChainProducts:
    """What the sky branch made for one region (arrays, no paths)."""

    candidates: pd.DataFrame
    triplets: np.ndarray  # (N, 3, S, S), rows in the order of ``candidates``
    science: np.ndarray  # normalised science
    reference: np.ndarray  # aligned, flux-matched reference
    difference: np.ndarray  # ZOGY D
    scorr: np.ndarray


# --------------------------------------------------------------------------- perturbations
@dataclass
class _Perturbations:
    """Where the injected bogus sit, in science pixels, by type."""

    points: dict = field(default_factory=lambda: {k: [] for k in BOGUS_TYPES})
    zones: list = field(default_factory=list)  # (type, callable(x, y) -> bool)
    applied: list = field(default_factory=list)
    saturation: float | None = None  # the low saturation level applied, ADU

    def add(self, kind, xs, ys):
        self.points[kind].extend(zip(np.asarray(xs, float).tolist(), np.asarray(ys, float).tolist()))


def _noise_adu(header, data, mask=None) -> float:
    from astrid_pipeline.science.zogy import robust_std

    v = np.asarray(data, float)
    ok = np.isfinite(v) if mask is None else np.isfinite(v) & ~mask
    return float(robust_std(v[ok][:: max(1, ok.sum() // 200_000)])) or 1.0


def _cr_table_rows(xs, ys, lengths, start):
    return pd.DataFrame({"cr_id": np.arange(start, start + len(xs)), "kind": "injected", "x": xs, "y": ys,
                         "length_px": lengths, "charge_e": np.nan, "npix": 0})


def _half_plane(rng: np.random.Generator, shape, softness: float):
    """A soft half-plane weight (0 -> 1 across a random line through the central 40 % of the image, over
    ``softness`` px) and its line: (weight image, cos, sin, x0, y0)."""
    ny, nx = shape
    ang = rng.uniform(0, 2 * np.pi)
    x0, y0 = rng.uniform(0.3, 0.7) * nx, rng.uniform(0.3, 0.7) * ny
    yy, xx = np.mgrid[0:ny, 0:nx]
    c, s = np.cos(ang), np.sin(ang)
    return 1.0 / (1.0 + np.exp(-((xx - x0) * c + (yy - y0) * s) / softness)), c, s, x0, y0


def perturb_pair(pair, rng: np.random.Generator, cfg: TripletSetConfig):
    """Make the archive pair go wrong as real data do (see the module docstring); returns the record."""
    from astropy.wcs import WCS
    from scipy import ndimage

    from astrid_pipeline.science.cosmic_rays.simulate import add_cosmic_rays

    rec = _Perturbations()
    sci_h, ref_h = pair.science[0], pair.reference[0]
    sci = np.asarray(sci_h.data, np.float64)
    ref = np.asarray(ref_h.data, np.float64)
    ny, nx = sci.shape
    wsci = WCS(sci_h.header).celestial
    wref = WCS(ref_h.header).celestial
    sig_s = _noise_adu(sci_h.header, sci)
    sig_r = _noise_adu(ref_h.header, ref)
    cr_rows = [pair.cosmic_rays] if pair.cosmic_rays is not None else []
    n_cr = int(sum(len(t) for t in cr_rows))

    if rng.random() < cfg.p_science_crs:
        sig, _, hits = add_cosmic_rays(rng, sci.shape, sig_s, density=float(rng.uniform(200, 900)),
                                       faint_fraction=0.6, faint_nsigma=(5.0, 25.0), bright_nsigma=(25.0, 3000.0))
        sci += sig
        xs, ys = [h["x"] for h in hits], [h["y"] for h in hits]
        rec.add("cosmic_ray", xs, ys)
        cr_rows.append(_cr_table_rows(xs, ys, [h["length_px"] for h in hits], n_cr))
        n_cr += len(hits)
        rec.applied.append("science_crs")
    if rng.random() < cfg.p_template_crs:
        sig, _, hits = add_cosmic_rays(rng, ref.shape, sig_r, density=float(rng.uniform(150, 600)),
                                       faint_fraction=0.4, faint_nsigma=(5.0, 25.0), bright_nsigma=(25.0, 3000.0))
        ref += sig
        if hits:
            sx, sy = wsci.world_to_pixel(wref.pixel_to_world([h["x"] for h in hits], [h["y"] for h in hits]))
            rec.add("cosmic_ray", sx, sy)
            cr_rows.append(_cr_table_rows(np.asarray(sx), np.asarray(sy), [h["length_px"] for h in hits], n_cr))
            n_cr += len(hits)
        rec.applied.append("template_crs")
    if rng.random() < cfg.p_bad_pixels:
        for _ in range(int(rng.integers(1, 4))):
            c = int(rng.integers(8, nx - 8))
            y0 = int(rng.integers(0, ny - 40))
            y1 = min(ny, y0 + int(rng.integers(20, 160)))
            if rng.random() < 0.25:
                sci[y0:y1, c] = 0.0  # dead column segment
            else:
                sci[y0:y1, c] += float(rng.uniform(3, 40)) * sig_s
            ys = np.arange(y0, y1, 4, dtype=float)
            rec.add("bad_column", np.full(ys.size, float(c)), ys)
        n_hot = int(rng.integers(3, 12))
        hx, hy = rng.integers(2, nx - 2, n_hot), rng.integers(2, ny - 2, n_hot)
        sci[hy, hx] += np.exp(rng.uniform(np.log(15.0), np.log(3000.0), n_hot)) * sig_s
        rec.add("hot_pixel", hx, hy)
        rec.applied.append("bad_pixels")
    if rng.random() < cfg.p_psf_variation:
        s1, s2 = rng.uniform(0.6, 1.4), rng.uniform(0.3, 1.0)
        blur = ndimage.gaussian_filter(sci, (s1, s2) if rng.random() < 0.5 else (s2, s1), mode="nearest")
        w, c, s, x0, y0 = _half_plane(rng, (ny, nx), softness=8.0)
        sci = w * blur + (1 - w) * sci
        rec.zones.append(("psf_mismatch", lambda x, y, c=c, s=s, x0=x0, y0=y0: (x - x0) * c + (y - y0) * s > 0))
        rec.applied.append("psf_variation")
    if rng.random() < cfg.p_saturation:
        level = float(rng.uniform(3000, 15000))
        over = sci >= level
        if over.any():
            sci = np.minimum(sci, level)
            rec.saturation = level
            lab, n = ndimage.label(over)
            com = ndimage.center_of_mass(over, lab, range(1, n + 1))
            rec.add("saturated_star", [c[1] for c in com], [c[0] for c in com])
            if rng.random() < 0.7:
                sci_h.header["SATURATE"] = (level, "[ADU] saturation level")
            else:
                sci_h.header.remove("SATURATE", ignore_missing=True)
            rec.applied.append("saturation")
    if rng.random() < cfg.p_astrometry:
        th = np.radians(rng.uniform(0.08, 0.3) * rng.choice([-1, 1]))
        rot = np.array([[np.cos(th), -np.sin(th)], [np.sin(th), np.cos(th)]])
        w = wref.deepcopy()
        cd = w.pixel_scale_matrix @ rot
        crpix = w.wcs.crpix + rng.uniform(-0.6, 0.6, 2)
        w.wcs.pc, w.wcs.cdelt = cd, [1.0, 1.0]
        w.wcs.crpix = crpix
        h = ref_h.header
        for key in [k for k in h if k.startswith(("PC1_", "PC2_", "CD1_", "CD2_", "CDELT"))]:
            del h[key]
        h.update(w.to_header())
        rec.zones.append(("dipole", lambda x, y: np.ones_like(np.asarray(x, float), bool)))
        rec.applied.append("astrometry")
    if rng.random() < cfg.p_misregistration:
        shift = rng.uniform(0.3, 1.0) * np.array([np.cos(a := rng.uniform(0, 2 * np.pi)), np.sin(a)])
        moved = ndimage.shift(ref, (shift[1], shift[0]), order=3, mode="nearest")
        w, c, s, x0, y0 = _half_plane(rng, (ny, nx), softness=6.0)
        ref = w * moved + (1 - w) * ref
        # the template zone in science pixels (the pair is only offset and slightly rotated)
        rec.zones.append(("dipole", lambda x, y, c=c, s=s, x0=x0, y0=y0: (x - x0) * c + (y - y0) * s > -8.0))
        rec.applied.append("misregistration")
    sci_h.data = sci.astype(np.float32)
    ref_h.data = ref.astype(np.float32)
    if cr_rows:
        pair.cosmic_rays = pd.concat(cr_rows, ignore_index=True)
    return rec


# --------------------------------------------------------------------------- labelling
def _nearest(xs, ys, pts):
    if not pts:
        return np.full(len(xs), np.inf)
    from scipy.spatial import cKDTree

    d, _ = cKDTree(np.asarray(pts, float)).query(np.column_stack([xs, ys]))
    return d


def label_candidates(cands: pd.DataFrame, truth: pd.DataFrame, rec: _Perturbations, reference: np.ndarray,
                     fwhm: float = 3.0) -> pd.DataFrame:
    """``label`` (1 real, 0 bogus), ``type``, ``expected_snr`` for each chain candidate.

    Truth wins: a candidate matched to an injected transient (the chain's own
    ``truth_id``) is real. Otherwise the nearest injected cause within 4 px
    (saturated stars: 2.5 FWHM) types it; failing that, a zone perturbation
    (blurred area, wrong WCS) that covers it types it when a template source
    lies beneath it, and anything else is a ``residual``.
    """
    from astrid_pipeline.science.background import estimate_background
    from astrid_pipeline.science.stars import detect_sources

    out = cands.copy()
    n = len(out)
    out["label"] = np.zeros(n, np.uint8)
    out["type"] = "residual"
    out["expected_snr"] = np.nan
    if n == 0:
        return out
    xs, ys = out["x"].to_numpy(float), out["y"].to_numpy(float)
    real = out["truth_id"].astype(str).to_numpy() != ""
    if real.any() and len(truth):
        t = truth.set_index("transient_id")
        tid = out.loc[real, "truth_id"].astype(str)
        out.loc[real, "type"] = t.loc[tid, "type"].to_numpy()
        out.loc[real, "expected_snr"] = t.loc[tid, "expected_snr"].to_numpy(float)
        out.loc[real, "label"] = 1
        real &= out["type"].isin(REAL_TYPES).to_numpy()
    best = np.full(n, np.inf)
    kind = np.array(["residual"] * n, dtype=object)
    for k, pts in rec.points.items():
        d = _nearest(xs, ys, pts)
        radius = 2.5 * fwhm if k == "saturated_star" else (3.0 if k == "bad_column" else 4.0)
        d = np.where(d <= radius, d, np.inf)
        sel = d < best
        best[sel], kind[sel] = d[sel], k
    chain_cr = out.get("label_chain", pd.Series([""] * n)).astype(str).to_numpy() == "cosmic_ray"
    kind[np.isinf(best) & chain_cr] = "cosmic_ray"
    # zone perturbations need a template source under the candidate
    bk = estimate_background(np.nan_to_num(reference), ~np.isfinite(reference))
    src = detect_sources(np.nan_to_num(reference) - bk.level, bk.rms, threshold=8.0, mask=~np.isfinite(reference))
    near_src = _nearest(xs, ys, list(zip(src["x"], src["y"])) if len(src) else []) <= max(3.0, fwhm)
    for k, inside in rec.zones:
        sel = (kind == "residual") & near_src & np.asarray(inside(xs, ys), bool)
        kind[sel] = k
    bogus = ~real
    out.loc[bogus, "type"] = kind[bogus]
    out.loc[bogus, "label"] = 0
    return out


def noise_peaks(scorr: np.ndarray, avoid_x, avoid_y, rng: np.random.Generator, max_peaks: int = 4,
                lo: float = 3.8, hi: float = 5.0, min_sep: float = 12.0, edge: int = 8) -> pd.DataFrame:
    """Local maxima of |S_corr| in [lo, hi) at least ``min_sep`` px from every position to avoid."""
    from scipy import ndimage

    a = np.nan_to_num(np.abs(scorr))
    peak = (a == ndimage.maximum_filter(a, size=7)) & (a >= lo) & (a < hi)
    peak[:edge], peak[-edge:], peak[:, :edge], peak[:, -edge:] = False, False, False, False
    yy, xx = np.nonzero(peak)
    if xx.size == 0:
        return pd.DataFrame(columns=["x", "y", "snr", "sign"])
    d = _nearest(xx, yy, list(zip(avoid_x, avoid_y)))
    keep = np.nonzero(d >= min_sep)[0]
    keep = rng.permutation(keep)[:max_peaks]
    s = scorr[yy[keep], xx[keep]]
    return pd.DataFrame({"x": xx[keep].astype(float), "y": yy[keep].astype(float), "snr": s.astype(float),
                         "sign": np.sign(s).astype(int)})


# --------------------------------------------------------------------------- the set
def _region_survey(rng: np.random.Generator, cfg: TripletSetConfig):
    from astrid_pipeline.science.skysim import SurveyConfig

    lo_snr = [(4.0, 10.0), (8.0, 25.0), (20.0, 120.0)][int(rng.integers(3))]
    fs = float(rng.uniform(2.2, 4.2))
    fr = float(rng.uniform(1.5, min(2.8, fs - 0.3)))
    return SurveyConfig(
        shape=(cfg.image_size, cfg.image_size), seed=int(rng.integers(2**31)),
        star_density=float(rng.uniform(700, 3500)), galaxy_density=float(rng.uniform(150, 900)),
        sky_science=float(np.exp(rng.uniform(np.log(80), np.log(1500)))), gain=float(rng.uniform(1.0, 4.0)),
        read_noise=float(rng.uniform(3, 10)), fwhm_science=(fs, fs), fwhm_reference=(fr, fr),
        moffat_beta=float(rng.uniform(2.5, 4.5)), cosmic_ray_density=float(rng.uniform(20, 150)),
        n_supernova=int(rng.integers(2, 5)), n_variable=int(rng.integers(2, 5)), n_nova=int(rng.integers(1, 4)),
        n_asteroid=int(rng.integers(1, 3)), n_asteroid_trailed=int(rng.integers(1, 3)), n_faint=0,
        snr_range=lo_snr, edge_margin=12, n_bad_columns=int(rng.integers(0, 3)),
        filter_name=["g", "r", "i"][int(rng.integers(3))])


def _split_of_regions(n: int, cfg: TripletSetConfig, rng: np.random.Generator) -> np.ndarray:
    n_test = int(round(cfg.test_fraction * n))
    n_val = int(round(cfg.val_fraction * n)) if n_test < n else 0
    if cfg.val_fraction > 0 and n_val == 0 and n - n_test >= 2:
        n_val = 1
    split = np.array(["train"] * n, dtype=object)
    order = rng.permutation(n)
    split[order[:n_test]] = "test"
    split[order[n_test:n_test + n_val]] = "val"
    return split




def build_triplet_training_set(settings: TripletSetConfig, out_path: str | os.PathLike,
                               run_chain: Callable[..., ChainProducts], log=None) -> dict:
    """Simulate, perturb and run ``settings.n_regions`` regions and write their triplets to ``out_path`` (HDF5).

    ``run_chain(pair, region, workdir, stamp_size)`` runs the sky branch on one archive pair in a scratch
    folder and returns its :class:`ChainProducts` (:func:`astrid_pipeline.sky.chain.run_sky_chain`); this
    module never sees the branch's data layout.

    Returns metadata: sizes, class balance and per-type counts per split,
    the perturbations applied, and the seconds spent.
    """
    import time

    from astrid_pipeline.archives.simulated import SimulatedSurvey
    from astrid_pipeline.io.hdf5_io import open_atomic_hdf5, set_attrs, write_dataset
    from astrid_pipeline.regions import Region
    from astrid_pipeline.science.cutouts import make_triplets

    cfg = settings.validate()
    rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, 0x7269]))
    split_of = _split_of_regions(cfg.n_regions, cfg, rng)
    s = cfg.stamp_size
    t0 = time.perf_counter()
    tables: list[pd.DataFrame] = []
    applied: dict[str, int] = {}
    scratch = Path(tempfile.mkdtemp(prefix="astrid_triplets_"))
    n_rows = 0
    try:
        with open_atomic_hdf5(out_path, step="triplet_training_set",
                              attrs={"config_json": json.dumps(asdict(cfg)), "planes": ["science", "reference",
                                                                                         "difference"]}) as f:
            ds = f.create_dataset("triplets", shape=(0, 3, s, s), maxshape=(None, 3, s, s), dtype="float32",
                                  chunks=(32, 3, s, s), compression="gzip", compression_opts=4, shuffle=True)
            ds.attrs["description"] = ("(N, 3, H, W): science (normalised), reference (aligned, flux-matched), "
                                       "difference (ZOGY D); NaN beyond the image edge")
            ds.attrs["unit"] = "adu (science, reference); D (unit-variance ZOGY proper difference)"
            for i in range(cfg.n_regions):
                rr = np.random.default_rng(np.random.SeedSequence([cfg.seed, i]))
                name = f"rb{cfg.seed}-{i:05d}"
                ra = float(rr.uniform(0, 360))
                dec = float(np.degrees(np.arcsin(rr.uniform(np.sin(np.radians(-60)), np.sin(np.radians(80))))))
                survey = _region_survey(rr, cfg)
                pair = SimulatedSurvey(survey).fetch_pair(Region(name, ra, dec))
                rec = perturb_pair(pair, rr, cfg)
                for a in rec.applied:
                    applied[a] = applied.get(a, 0) + 1
                work = scratch / name
                try:
                    prod = run_chain(pair, name, work, s)
                except Exception as exc:  # noqa: BLE001 - a region the chain rejects is reported, not fatal
                    if log:
                        log(f"region {name}: sky branch failed ({type(exc).__name__}: {exc}); skipped")
                    applied["failed_regions"] = applied.get("failed_regions", 0) + 1
                    continue
                finally:
                    if not cfg.keep_workdirs:
                        shutil.rmtree(work, ignore_errors=True)
                c = prod.candidates.rename(columns={"label": "label_chain"})
                ny, nx = prod.science.shape
                inner = ((c["x"] >= cfg.border) & (c["x"] <= nx - 1 - cfg.border) & (c["y"] >= cfg.border)
                         & (c["y"] <= ny - 1 - cfg.border)).to_numpy()
                c = c[inner].reset_index(drop=True)
                prod.triplets = prod.triplets[inner]
                fwhm = float(pair.science[0].header.get("SIMFWHM", 3.0))
                lab = label_candidates(c, pair.truth, rec, prod.reference, fwhm)
                np_tab = noise_peaks(prod.scorr, np.r_[lab["x"], pair.truth["x"]], np.r_[lab["y"], pair.truth["y"]],
                                     rr, cfg.max_noise_peaks, edge=max(cfg.border, 8))
                trip = prod.triplets
                if len(np_tab):
                    t2, _ = make_triplets(prod.science, prod.reference, prod.difference, np_tab["x"], np_tab["y"], s)
                    trip = np.concatenate([trip, t2]) if len(trip) else t2
                    np_tab = np_tab.assign(label=0, type="noise_peak", expected_snr=np.nan, flags=0,
                                           candidate_id=-1 - np.arange(len(np_tab)))
                rows = pd.concat([lab[["label", "type", "snr", "expected_snr", "sign", "flags", "x", "y",
                                       "candidate_id"]], np_tab[["label", "type", "snr", "expected_snr", "sign",
                                                                 "flags", "x", "y", "candidate_id"]]],
                                 ignore_index=True) if len(np_tab) else lab[["label", "type", "snr", "expected_snr",
                                                                             "sign", "flags", "x", "y",
                                                                             "candidate_id"]].copy()
                rows["region"] = name
                rows["split"] = split_of[i]
                if len(rows):
                    ds.resize(n_rows + len(rows), axis=0)
                    ds[n_rows:n_rows + len(rows)] = trip.astype(np.float32)
                    n_rows += len(rows)
                    tables.append(rows)
                if log and (i + 1) % 10 == 0:
                    log(f"{i + 1}/{cfg.n_regions} regions, {n_rows} triplets, {time.perf_counter() - t0:.0f} s")
            table = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame(columns=COLUMNS)
            table["type_index"] = [ALL_TYPES.index(t) for t in table["type"]]
            for col in COLUMNS:
                v = table[col].to_numpy()
                if col in ("label",):
                    v = v.astype(np.uint8)
                elif col in ("type_index", "flags"):
                    v = v.astype(np.int32)
                elif col == "sign":
                    v = v.astype(np.int8)
                elif col == "candidate_id":
                    v = v.astype(np.int64)
                elif col in ("type", "region", "split"):
                    v = v.astype(str)
                else:
                    v = v.astype(np.float64)
                write_dataset(f, col, v, compression=None, chunks=None,
                              unit={"x": "pix", "y": "pix"}.get(col))
            meta = summarize_table(table)
            meta.update(n_regions=cfg.n_regions, perturbations=applied, seconds=round(time.perf_counter() - t0, 1),
                        config=asdict(cfg), types=list(ALL_TYPES), real_types=list(REAL_TYPES))
            set_attrs(f, {"summary_json": json.dumps(meta, default=str)})
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    meta["path"] = str(Path(out_path))
    return meta
