"""Output files with numina-crmasks' names and layout, written all-or-nothing.

* ``combined_{mean,median,min,mediancr,meancrt,meancr,meancr2}.fits``: the
  combined image (PRIMARY, float32, bias subtracted), ``VARIANCE`` (float32),
  ``MAP`` (int16, number of exposures used) and ``SCATTER`` (float32). So that
  a combined image can feed the sky branch, the PRIMARY header keeps the
  first exposure's celestial WCS, EXPTIME, DATE-OBS/MJD-OBS, FILTER and
  BUNIT, and says ``NCOMBINE`` (the exposures combined). ``VARIANCE`` is the
  variance *of the combined pixel* (the error map; Poisson + read noise
  propagated through the estimator, :func:`.combine.combination_variance`);
  numina's VARIANCE, the sample variance of the inputs, is ``SCATTER``. The
  single-exposure GAIN is *not* written as GAIN (the mean of N exposures has
  N times the gain, and a median another factor): it is ``EXPGAIN``, the
  read noise ``EXPRNOIS``; the noise model reads VARIANCE instead.
* ``diagnostic_seeing.csv``: each exposure's stellar FWHM, the PSF-matching
  kernel, the stack's seeing variation and the warning when it exceeds
  ``seeing_tolerance`` (also ``FWHMi``/``SEEVAR``/``SEEWARN``/``PSFMATCH``
  in the headers).
* ``crmasks.fits``: PRIMARY without data (UUID, FLUXF1..N, the parameters as
  HISTORY), then ``MEDIANCR``, ``MEANCRT``, ``CRMASK1..N``, ``MEANCR`` (uint8,
  1 = cosmic ray, keyword NPMASKED) and ``AUXCLEAN`` (float32); ``RPMEDIAN``
  (binary table X_pixel, Y_pixel, X_width, Y_width) when pixels are to be
  replaced by a local median. numina's ``apply_crmasks`` reads it as is.
* ``mediancr_identified_{any4,only3,only2,other}.csv`` (CR_number, X_pixel,
  Y_pixel, Mask_value; FITS pixel numbers), ``problematic_pixels.csv``
  (pixels masked in every CRMASKi) and ``diagnostic_boundary.csv`` (the
  crosses and the fitted boundary).
* ``diagnostic_histogram2d.png`` (simulated and real MM diagrams with the
  boundary) and ``diagnostic_mediancr.png`` (the flagged pixels on the
  diagram and on the median image). Matplotlib's Agg backend; no window.

Everything is first written into a hidden temporary folder beside the
destination; only when every file is complete are they moved into place.
On any error the temporary folder is removed and the destination is left
as it was.
"""

from __future__ import annotations

import contextlib
import csv
import os
import secrets
import shutil
import uuid
from pathlib import Path
from typing import Sequence

import numpy as np
from astropy.io import fits

from astrid_pipeline.io.atomic import atomic_path
from astrid_pipeline.io.fits_io import provenance_cards, write_fits

from .masks import classify_groups
from .params import VALID_COMBINATIONS

STEP = "mmcosmic"


def _fits_safe(value):
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, (np.integer,)):
        return int(value)
    return value


def _history_lines(requirements, extra: dict) -> list[str]:
    lines = []
    for key, value in {**extra, **requirements.to_dict()}.items():
        text = f"- {key} = {value}"
        while len(text) > 70:
            lines.append(text[:70])
            text = "  " + text[70:]
        lines.append(text)
    return lines


def crmasks_hdulist(result, *, inputs: Sequence[str] = (), detector: dict | None = None) -> fits.HDUList:
    """The crmasks.fits content (numina layout) for a :class:`~.pipeline.CRMasksResult`."""
    cards, history = provenance_cards(STEP, inputs)
    hdr = fits.Header()
    for k, v, c in cards:
        hdr[k] = (v, c)
    hdr["UUID"] = (str(uuid.uuid4()), "masks id")
    for i, f in enumerate(result.flux_factors):
        hdr[f"FLUXF{i + 1}"] = (float(f), f"flux factor of image {i + 1}")
    for i, f in enumerate(result.simulated_flux_factors):
        hdr[f"SIMFF{i + 1}"] = (float(f), f"flux factor, simulated image {i + 1}")
    hdr["CRMETHOD"] = (result.requirements.crmethod, "cosmic-ray method")
    hdr["XBINNING"] = (result.requirements.mm_xbinning, "x binning of the MM diagram")
    hdr["MMTHRESH"] = (float(result.mm_threshold), "[ADU] mm_threshold_rnoise * rnoise")
    hdr["GAIN"] = (float(result.gain), "[e-/ADU]")
    hdr["RNOISE"] = (float(result.rnoise), "[ADU] read noise")
    if np.ndim(result.bias) == 0:
        hdr["BIAS"] = (float(result.bias), "[ADU] bias subtracted")
    for name, n in result.counts.items():
        key = ("N" + "".join(ch for ch in name.upper() if ch.isalnum()))[:8]
        hdr[key] = (int(n), name.replace("_", " ")[:30])
    if getattr(result, "seeing", None) is not None:
        for key, card in result.seeing.header_cards().items():
            hdr[key] = card
        if result.seeing.warning:
            hdr.add_history(f"WARNING: {result.seeing.warning}")
    for line in history:
        hdr.add_history(line)
    extra = {"gain": result.gain, "rnoise": result.rnoise,
             "bias": result.bias if np.ndim(result.bias) == 0 else "2-D frame"}
    if detector:
        extra.update(detector)
    for line in _history_lines(result.requirements, extra):
        hdr.add_history(line)
    hdus = [fits.PrimaryHDU(header=hdr)]
    names = ["MEDIANCR", "MEANCRT"] + [f"CRMASK{i + 1}" for i in range(result.stack.shape[0])] + ["MEANCR"]
    for name in names:
        m = result.masks[name].astype(np.uint8)
        h = fits.ImageHDU(m, name=name)
        h.header["NPMASKED"] = (int(m.sum()), "number of masked pixels")
        hdus.append(h)
    hdus.append(fits.ImageHDU(result.auxclean.astype(np.float32), name="AUXCLEAN"))
    rows = result.requirements.pixels_to_be_replaced_by_local_median
    if rows:
        cols = [
            fits.Column(name=nm, format="K", array=[int(r[j]) for r in rows])
            for j, nm in enumerate(("X_pixel", "Y_pixel", "X_width", "Y_width"))
        ]
        hdus.append(fits.BinTableHDU.from_columns(cols, name="RPMEDIAN"))
    return fits.HDUList(hdus)


def _write_csv(path: Path, header: list[str], rows) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(header)
            w.writerows(rows)


def cr_tables(code: np.ndarray) -> dict[str, list[tuple[int, int, int, int]]]:
    """Rows (CR_number, X_pixel, Y_pixel, Mask_value) of the four MEDIANCR categories."""
    labels, cats = classify_groups(code)
    out = {name: [] for name in cats}
    if labels.max() == 0:
        return out
    rr, cc = np.nonzero(labels)
    lab = labels[rr, cc]
    order = np.lexsort((cc, rr, lab))  # by group, then y, then x
    rr, cc, lab = rr[order], cc[order], lab[order]
    vals = code[rr, cc]
    cat_of = {}
    for name, groups in cats.items():
        for g in groups:
            cat_of[g] = name
    for r, c, g, v in zip(rr.tolist(), cc.tolist(), lab.tolist(), vals.tolist()):
        out[cat_of[g]].append((g, c + 1, r + 1, v))
    return out


def _plots(result, out: Path) -> list[str]:
    """Two light PNGs (images drawn with imshow in asinh(x) coordinates, so they stay fast)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from matplotlib.colors import LogNorm

    x = result.stats.x.ravel()
    y = result.stats.y.ravel()
    bnd = result.boundary
    sim = result.simulated
    scale = max(result.gain * result.rnoise**2, 1.0)
    xlo, xhi = float(x.min()), float(x.max())
    u0, u1 = np.arcsinh(xlo / scale), np.arcsinh(max(xhi, xlo + 1) / scale)
    yhi = result.requirements.mm_ydiag_max or float(max(np.percentile(y, 99.99) * 1.5, 1.0))
    nu, nyb = 160, 120
    ub = np.linspace(u0, u1, nu + 1)
    yb = np.linspace(0, yhi, nyb + 1)
    u = np.arcsinh(x / scale)
    iu = ((u - u0) * (nu / max(u1 - u0, 1e-12))).astype(np.int64)
    iy = (y * (nyb / yhi)).astype(np.int64)
    inside = (iu >= 0) & (iu < nu) & (iy >= 0) & (iy < nyb)
    hr = np.bincount(iy[inside] * nu + iu[inside], minlength=nyb * nu).reshape(nyb, nu).astype(float)
    extent = (u0, u1, 0, yhi)
    ticks_x = [v for v in (-100, -10, 0, 10, 100, 1e3, 1e4, 1e5, 1e6) if xlo <= v <= xhi]
    uc = 0.5 * (ub[1:] + ub[:-1])
    ugrid = np.linspace(u0, u1, 300)
    xgrid = np.sinh(ugrid) * scale

    def decorate(ax):
        ax.set_xticks(np.arcsinh(np.asarray(ticks_x) / scale), [f"{v:g}" for v in ticks_x])
        ax.set_xlabel("min2d - bias [ADU] (asinh scale)")
        ax.axhline(result.mm_threshold, color="gray", ls=":", lw=1, label="mm_threshold")
        if bnd is not None:
            ax.plot(ugrid, bnd(xgrid), "r-", lw=1.2, label="boundary")
            cx, cy = result.crosses
            ax.plot(np.arcsinh(np.asarray(cx) / scale), cy, "r+", ms=6, label="crosses")
        ax.set_xlim(u0, u1)
        ax.set_ylim(0, yhi)

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5), sharey=True)
    if sim is not None:
        # the simulated diagram (per simulated stack): each x bin's y distribution, spread
        # over the columns of the bin in proportion to the data's pixels there
        zc = 0.5 * (sim.z_edges[1:] + sim.z_edges[:-1])
        col_counts = hr.sum(axis=0)
        xc = np.sinh(uc) * scale
        col_bin = np.clip(np.searchsorted(sim.x_edges, xc, side="right") - 1, 0, sim.hist.shape[0] - 1)
        hs = np.zeros_like(hr)
        for ci in np.nonzero(col_counts > 0)[0]:
            b = col_bin[ci]
            tot = sim.hist[b].sum()
            if tot == 0:
                continue
            sig = float(np.sqrt(max(xc[ci], 0) / sim.gain + sim.rnoise**2))
            h, _ = np.histogram(zc * sig, bins=yb, weights=sim.hist[b] / tot)
            hs[:, ci] = h * col_counts[ci]
        if hs.max() > 0:
            axes[0].imshow(np.where(hs > 0, hs, np.nan), origin="lower", extent=extent, aspect="auto",
                           norm=LogNorm(vmin=1e-2), interpolation="nearest")
    axes[0].set_title(f"simulated ({result.requirements.mm_nsimulations} stacks, per stack)")
    if hr.max() > 0:
        im = axes[1].imshow(np.where(hr > 0, hr, np.nan), origin="lower", extent=extent, aspect="auto",
                            norm=LogNorm(), interpolation="nearest")
        fig.colorbar(im, ax=axes[1], label="pixels")
    axes[1].set_title("data")
    for ax in axes:
        decorate(ax)
    axes[0].set_ylabel("median2d - min2d [ADU]")
    axes[1].legend(loc="upper left", fontsize=8)
    fig.subplots_adjust(left=0.07, right=0.97, bottom=0.12, top=0.92, wspace=0.08)
    fig.savefig(out / "diagnostic_histogram2d.png", dpi=72)
    plt.close(fig)

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
    code = result.code
    ax = axes[0]
    if hr.max() > 0:
        ax.imshow(np.where(hr > 0, hr, np.nan), origin="lower", extent=extent, aspect="auto",
                  norm=LogNorm(), cmap="Greys", interpolation="nearest")
    styles = {2: ("b+", "M.M.Cosmic only"), 3: ("rx", "Aux.Cosmic only"), 4: ("mo", "both"), 1: ("k.", "dilation")}
    cflat = code.ravel()
    for c, (st, label) in styles.items():
        sel = cflat == c
        if sel.any():
            ax.plot(u[sel], y[sel], st, ms=3, mfc="none", label=f"{label} ({int(sel.sum())})")
    decorate(ax)
    if (cflat > 0).any():
        ax.set_ylim(0, max(yhi, float(y[cflat > 0].max()) * 1.05))
    ax.set_ylabel("median2d - min2d [ADU]")
    ax.legend(loc="upper left", fontsize=8)
    ax = axes[1]
    med = result.stats.median2d
    step = max(1, int(np.ceil(max(med.shape) / 512)))
    shown = med[::step, ::step]
    lo, hi = np.percentile(shown, [1, 99.5])
    ax.imshow(shown, origin="lower", cmap="gray", vmin=lo, vmax=hi, interpolation="nearest",
              extent=(-0.5, med.shape[1] - 0.5, -0.5, med.shape[0] - 0.5))
    for c, (st, label) in styles.items():
        rr, cc = np.nonzero(code == c)
        if rr.size:
            ax.plot(cc, rr, st, ms=3, mfc="none")
    ax.set_title("median2d with MEDIANCR pixels (python indices)")
    fig.subplots_adjust(left=0.07, right=0.98, bottom=0.12, top=0.92, wspace=0.15)
    fig.savefig(out / "diagnostic_mediancr.png", dpi=72)
    plt.close(fig)
    return ["diagnostic_histogram2d.png", "diagnostic_mediancr.png"]


def write_products(
    result,
    folder: str | os.PathLike,
    *,
    inputs: Sequence[str] = (),
    plots: bool = True,
    detector: dict | None = None,
    header=None,
) -> list[str]:
    """Write every output file of ``result`` into ``folder`` (which must exist). Returns the names.

    ``header``: the first exposure's header (its WCS, EXPTIME, ... go into the combined images).
    """
    out = Path(folder)
    written = _write_files(result, out, inputs=inputs, detector=detector, header=header)
    if plots and result.boundary is not None:
        written.extend(_plots(result, out))
    return written


#: keywords of the first exposure a combined image keeps (besides its celestial WCS)
EXPOSURE_KEYS = ("EXPTIME", "DATE-OBS", "MJD-OBS", "TIME-OBS", "FILTER", "OBJECT", "TELESCOP", "INSTRUME",
                 "DETECTOR", "RADESYS", "EQUINOX", "SATURATE", "AIRMASS")


def exposure_cards(header, n: int, gain: float, rnoise: float) -> fits.Header:
    """The cards a combined image takes from its first exposure (``header``; None: only NCOMBINE and units)."""
    import warnings

    from astropy.wcs import WCS, FITSFixedWarning

    out = fits.Header()
    bunit = "adu"
    if header is not None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FITSFixedWarning)
            try:
                w = WCS(header).celestial
            except Exception:  # noqa: BLE001 - a header without a usable WCS gives a combined image without one
                w = None
        if w is not None and w.has_celestial:
            out.update(w.to_header(relax=True))
        for key in EXPOSURE_KEYS:
            if key in header:
                out[key] = (header[key], header.comments[key])
        if "EXPTIME" in out:
            out.comments["EXPTIME"] = "[s] of ONE exposure (combined on its scale)"
        bunit = str(header.get("BUNIT", bunit)).strip() or bunit
    out["BUNIT"] = (bunit, "bias subtracted, on one exposure's scale")
    out["NCOMBINE"] = (int(n), "exposures combined (M.M.Cosmic stack)")
    # GAIN of one exposure would be wrong here: a mean of N has N x the gain (the median another factor);
    # the noise model reads the VARIANCE extension instead
    out["EXPGAIN"] = (float(gain), "[e-/ADU] gain of ONE exposure; not this image's")
    out["EXPRNOIS"] = (float(rnoise), "[ADU] read noise of ONE exposure")
    out["VAREXT"] = ("VARIANCE", "extension with this image's variance")
    return out


def _write_files(result, out: Path, *, inputs, detector, header=None) -> list[str]:
    written = []
    hdul = crmasks_hdulist(result, inputs=inputs, detector=detector)
    uid = hdul[0].header["UUID"]
    with atomic_path(out / "crmasks.fits") as tmp:
        hdul.writeto(tmp, output_verify="silentfix")
    written.append("crmasks.fits")
    written.extend(write_combinations(result.combinations, out, uid=uid, n=result.stack.shape[0],
                                      k=result.requirements.mm_cr_coincidences, masks=result.masks,
                                      gain=result.gain, rnoise=result.rnoise,
                                      use_auxmedian=result.requirements.use_auxmedian, inputs=inputs,
                                      header=header, seeing=result.seeing))
    if result.seeing is not None:
        s = result.seeing
        rows = [(i + 1, Path(str(inputs[i])).name if i < len(inputs) else f"exposure {i + 1}",
                 f"{f:.4f}" if np.isfinite(f) else "", f"{s.kernel_fwhm[i]:.4f}" if s.kernel_fwhm else "0")
                for i, f in enumerate(s.fwhm)]
        rows.append(("stack", f"variation={s.variation:.4f}" if np.isfinite(s.variation) else "variation=",
                     f"psf_matched={s.psf_matched}", s.warning or "ok"))
        _write_csv(out / "diagnostic_seeing.csv", ["exposure", "file", "fwhm_px", "kernel_fwhm_px"], rows)
        written.append("diagnostic_seeing.csv")
    tables = cr_tables(result.code)
    for cat, rows in tables.items():
        _write_csv(out / f"mediancr_identified_{cat}.csv", ["CR_number", "X_pixel", "Y_pixel", "Mask_value"], rows)
        written.append(f"mediancr_identified_{cat}.csv")
    n = result.stack.shape[0]
    allm = np.logical_and.reduce([result.masks[f"CRMASK{i + 1}"] for i in range(n)])
    prob_rows = []
    if allm.any():
        from scipy import ndimage

        lab, _ = ndimage.label(allm, structure=np.ones((3, 3), bool))
        rr, cc = np.nonzero(lab)
        order = np.lexsort((cc, rr, lab[rr, cc]))
        prob_rows = [(int(lab[r, c]), int(c) + 1, int(r) + 1, 1) for r, c in zip(rr[order], cc[order])]
    _write_csv(out / "problematic_pixels.csv", ["CR_number", "X_pixel", "Y_pixel", "Mask_value"], prob_rows)
    written.append("problematic_pixels.csv")
    brows = []
    if result.boundary is not None:
        cx, cy = result.crosses
        for a, b in zip(np.asarray(cx).tolist(), np.asarray(cy).tolist()):
            brows.append(("cross", f"{a:.6g}", f"{b:.6g}"))
        kx = result.boundary.knot_x()
        for a in kx.tolist():
            brows.append(("knot", f"{a:.6g}", f"{float(result.boundary(np.array(a))):.6g}"))
    _write_csv(out / "diagnostic_boundary.csv", ["kind", "x", "y"], brows)
    written.append("diagnostic_boundary.csv")
    return written


def write_combinations(combinations: dict, out: Path, *, uid: str, n: int, k: int, masks: dict, gain: float,
                       rnoise: float, use_auxmedian: bool = False, inputs: Sequence[str] = (), header=None,
                       seeing=None) -> list[str]:
    """``combined_<name>.fits`` for each combination (see the module docstring for the layout)."""
    from .combine import combination_variance

    base = exposure_cards(header, n, gain, rnoise)
    if seeing is not None:
        for key, card in seeing.header_cards().items():
            base[key] = card
    names = []
    for name in VALID_COMBINATIONS:
        comb = combinations[name]
        hdr = base.copy()
        hdr["COMBINAT"] = (name, "combination method")
        hdr.add_history(f"Masks UUID: {uid}")
        var = combination_variance(name, comb.image, n=n, k=k, masks=masks, gain=gain, rnoise=rnoise,
                                   use_auxmedian=use_auxmedian)
        vh = fits.Header()
        vh["BUNIT"] = (f"({base['BUNIT']})**2", "variance of the combined pixel")
        sh = fits.Header()
        sh["BUNIT"] = (f"({base['BUNIT']})**2", "inputs' sample variance (numina VARIANCE)")
        write_fits(
            out / f"combined_{name}.fits",
            comb.image.astype(np.float32),
            header=hdr,
            extensions=[("VARIANCE", var, vh), ("MAP", comb.map.astype(np.int16), None),
                        ("SCATTER", comb.variance.astype(np.float32), sh)],
            step=STEP,
            inputs=inputs,
        )
        names.append(f"combined_{name}.fits")
    return names


def _new_temp_dir(parent: Path, stem: str) -> Path:
    """A new hidden temporary folder in ``parent``, after sweeping what a killed run left there (its
    ``.tmp-`` folders are removed, a folder it had moved aside is put back if nothing replaced it)."""
    from astrid_pipeline.io.atomic import sweep_orphan_temporaries

    parent.mkdir(parents=True, exist_ok=True)
    sweep_orphan_temporaries(parent)
    d = parent / f".{stem}.tmp-{os.getpid()}-{secrets.token_hex(4)}"
    d.mkdir()
    return d


def write_into(result, folder: str | os.PathLike, **kwargs) -> list[str]:
    """Write the products into an existing (or new) folder that may hold other files.

    All files are written in a hidden temporary folder inside ``folder`` and
    moved in only when complete; on error nothing in ``folder`` changes.
    """
    return files_into(folder, lambda tmp: write_products(result, tmp, **kwargs))


def files_into(folder: str | os.PathLike, produce) -> list[str]:
    """Run ``produce(tmp) -> names`` in a hidden temporary folder inside ``folder``, then move the files in."""
    dest = Path(folder)
    created = not dest.exists()
    tmp = _new_temp_dir(dest, "crmasks")
    ok = False
    try:
        names = produce(tmp)
        for name in names:
            os.replace(tmp / name, dest / name)
        ok = True
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if not ok and created:
            with contextlib.suppress(OSError):
                dest.rmdir()  # only if still empty
    return names


def write_folder(result, folder: str | os.PathLike, **kwargs) -> list[str]:
    """Write the products as the whole content of ``folder``, replacing it as one step.

    The new folder is built beside ``folder`` and renamed into place; an old
    ``folder`` is moved aside first and removed after. On error the old
    folder (or nothing) remains.
    """
    dest = Path(folder)
    tmp = _new_temp_dir(dest.parent, dest.name)
    try:
        names = write_products(result, tmp, **kwargs)
        old = None
        if dest.exists():
            old = dest.parent / f".{dest.name}.old-{os.getpid()}-{secrets.token_hex(4)}"
            os.replace(dest, old)
        try:
            os.replace(tmp, dest)
        except BaseException:
            if old is not None:
                os.replace(old, dest)
            raise
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(tmp)
        raise
    return names
