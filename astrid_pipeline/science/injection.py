"""Tools of the real-noise judge suite: realistic versions of a real pair, injections into real noise, scoring.

Shared by ``astrid_pipeline_tests/sky/test_real_noise.py`` and
``benchmarks/real_noise.py``. Nothing here uses the pipeline's own PSF,
noise model or detection code, so a pipeline is judged against measurements
it did not make itself:

- :func:`drizzle_like` resamples an image with ``reproject`` onto a
  rotated, finer grid (flux-conserving for counts) and writes drizzle-style
  header keywords: the noise becomes correlated as in a drizzled mosaic
  (bilinear at 0.8x the pixel size gives a lag-1 autocorrelation ~0.4).
- :func:`to_surface_brightness` converts counts to MJy/sr as a JWST
  product is (``value = counts / EXPTIME * PHOTMJSR``), writes BUNIT,
  PHOTMJSR, PIXAR_SR, PIXAR_A2 and keeps EXPTIME, and removes GAIN,
  read noise and saturation keywords.
- :func:`star_psf` stacks hand-picked (or :func:`pick_stars`-chosen) stars:
  local annulus background, a 2-D Gaussian fit for each centre, a spline
  shift to a common centre, aperture normalisation, median.
- :func:`flux_noise` measures the PSF-photometry noise on blank sky at
  random positions (the empirical matched-filter noise a detector that knows
  its noise sees), and :func:`difference_snr_per_flux` turns both images'
  flux noise and PSFs into the optimal S/N of a new point source in their
  difference (Zackay, Ofek & Gal-Yam 2016, eq. 14-15: the physical limit).
- :func:`plan_injections`, :func:`inject_point_sources` and
  :func:`score_injections` place sources at a known S/N on blank sky and
  count what a candidate catalog recovered, the clean false candidates, and
  the S_corr std on held-out blank pixels.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS

#: header keywords of a detector's gain, read noise and saturation (removed from calibrated products)
DETECTOR_KEYWORDS = ("GAIN", "GAINA", "GAINB", "CCDGAIN", "ATODGAIN", "EGAIN", "ARAWGAIN", "FLATMEDA", "FLATMEDB",
                     "RDNOISE", "RDNOISEA", "RDNOISEB", "READNOIS", "SATURATE", "SATURATA", "SATURATB", "ESATUR")


def _image_hdu(hdul: fits.HDUList):
    for h in hdul:
        if h.is_image and h.data is not None and np.ndim(h.data) == 2:
            return h
    raise ValueError("no 2-D image HDU")


# --------------------------------------------------------------------------- variants of a real pair
def rotated_grid(wcs: WCS, shape: tuple[int, int], scale: float = 0.8, rotation_deg: float = 20.0,
                 offset: tuple[float, float] = (0.0, 0.0)) -> tuple[WCS, tuple[int, int]]:
    """A TAN grid covering the image: pixels ``scale`` times the input's, rotated by ``rotation_deg``.

    ``offset`` (input pixels) moves the grid's centre; the output shape
    covers the whole rotated footprint (corners beyond it are empty, as the
    border of a mosaic is).
    """
    from astropy.wcs.utils import proj_plane_pixel_scales

    ny, nx = shape
    cx, cy = (nx - 1) / 2 + offset[0], (ny - 1) / 2 + offset[1]
    centre = wcs.celestial.pixel_to_world(cx, cy).icrs
    # the input's orientation: the position angle of its +y axis
    up = wcs.celestial.pixel_to_world(cx, cy + 10).icrs
    pa = centre.position_angle(up).rad
    pix = float(np.mean(proj_plane_pixel_scales(wcs.celestial))) * scale
    th = pa - np.radians(rotation_deg)
    out = WCS(naxis=2)
    out.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    out.wcs.crval = [centre.ra.deg, centre.dec.deg]
    c, s = np.cos(th), np.sin(th)
    out.wcs.cd = pix * np.array([[-c, -s], [-s, c]])  # east to the left, +y at position angle th (CROTA2 = th)
    th_r = np.radians(rotation_deg)
    side = int(np.ceil((max(nx, ny) * (abs(np.cos(th_r)) + abs(np.sin(th_r)))) / scale))
    side += side % 2 == 0
    out.wcs.crpix = [(side + 1) / 2, (side + 1) / 2]
    out.pixel_shape = (side, side)
    return out, (side, side)


def drizzle_like(hdul: fits.HDUList, *, scale: float = 0.8, rotation_deg: float = 20.0,
                 offset: tuple[float, float] = (0.0, 0.0), grid: tuple[WCS, tuple[int, int]] | None = None,
                 order: str = "bilinear", surface_brightness: bool | None = None) -> fits.HDUList:
    """The image resampled like a drizzled product: a rotated, finer TAN grid, NaN beyond the footprint.

    Counts are conserved (values times the pixel-area ratio) unless the
    image is a surface brightness (BUNIT per steradian/arcsec^2, or
    ``surface_brightness=True``). ``grid`` = (wcs, shape) resamples onto a
    given grid (both epochs of a pair onto one grid). The header keeps the
    input's keywords (time, exposure, gain), gets the new WCS and
    drizzle-style keywords (NDRIZIM, D001SCAL, D001VER).
    """
    from astropy.wcs.utils import proj_plane_pixel_area
    from reproject import reproject_interp

    h = _image_hdu(hdul)
    hdr = h.header.copy()
    if h is not hdul[0]:
        for card in hdul[0].header.cards:
            if card.keyword not in hdr and card.keyword not in ("", "COMMENT", "HISTORY", "SIMPLE", "EXTEND") \
                    and not card.keyword.startswith(("NAXIS", "BITPIX")):
                hdr[card.keyword] = (card.value, card.comment)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        w_in = WCS(hdr).celestial
    data = np.asarray(h.data, dtype=np.float64)
    w_out, shape = grid if grid is not None else rotated_grid(w_in, data.shape, scale, rotation_deg, offset)
    out, foot = reproject_interp((np.nan_to_num(data, nan=0.0), w_in), w_out, shape_out=shape, order=order)
    bad_in = ~np.isfinite(data)
    if bad_in.any():
        b, _ = reproject_interp((bad_in.astype(float), w_in), w_out, shape_out=shape, order="bilinear")
        out[np.nan_to_num(b, nan=1.0) > 0.01] = np.nan
    out[foot <= 0] = np.nan
    bunit = str(hdr.get("BUNIT", "")).lower().replace(" ", "")
    if surface_brightness is None:
        surface_brightness = "/sr" in bunit or "arcsec" in bunit
    if not surface_brightness:
        out *= proj_plane_pixel_area(w_out) / proj_plane_pixel_area(w_in)
    for k in list(hdr.keys()):
        if k.startswith(("CRPIX", "CRVAL", "CTYPE", "CDELT", "CUNIT", "CD1_", "CD2_", "PC1_", "PC2_", "PV", "A_",
                         "B_", "AP_", "BP_", "LONPOLE", "LATPOLE", "WCSAXES", "RADESYS", "EQUINOX", "LTV", "LTM",
                         "WAT", "WCSDIM")):
            del hdr[k]
    hdr.update(w_out.to_header())
    for k in ("MJD-OBS", "DATE-OBS"):  # the WCS header of the new grid carries no epoch; keep the image's
        if k in h.header:
            hdr[k] = (h.header[k], h.header.comments[k])
    hdr["NDRIZIM"] = (1, "images drizzled (drizzle-like test product)")
    hdr["D001VER"] = ("reproject_interp " + order, "resampling software")
    hdr["D001SCAL"] = (float(np.sqrt(proj_plane_pixel_area(w_out)) * 3600), "[arcsec] output pixel")
    hdr["D001PIXF"] = (1.0, "drop size")
    return fits.HDUList([fits.PrimaryHDU(out.astype(np.float32), hdr)])


def to_surface_brightness(hdul: fits.HDUList, photmjsr: float = 0.2) -> fits.HDUList:
    """Counts -> MJy/sr as a JWST level-3 product: BUNIT, PHOTMJSR, PIXAR_SR, PIXAR_A2, EXPTIME; no GAIN.

    ``value = counts / EXPTIME * PHOTMJSR`` (PHOTMJSR: MJy/sr per count/s).
    Gain, read-noise and saturation keywords are removed: the product says
    nothing about electrons.
    """
    from astropy.wcs.utils import proj_plane_pixel_area

    h = _image_hdu(hdul)
    hdr = h.header.copy()
    texp = float(hdr["EXPTIME"])
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        w = WCS(hdr).celestial
    area_sr = proj_plane_pixel_area(w) * (np.pi / 180) ** 2
    out = np.asarray(h.data, dtype=np.float64) / texp * photmjsr
    for k in DETECTOR_KEYWORDS:
        while k in hdr:
            del hdr[k]
    hdr["BUNIT"] = ("MJy/sr", "surface brightness")
    hdr["PHOTMJSR"] = (photmjsr, "[MJy/sr per count/s]")
    hdr["PIXAR_SR"] = (area_sr, "[sr] nominal pixel area")
    hdr["PIXAR_A2"] = (area_sr * (180 / np.pi * 3600) ** 2, "[arcsec^2] nominal pixel area")
    hdr["EXPTIME"] = (texp, "[s] effective exposure time")
    return fits.HDUList([fits.PrimaryHDU(out.astype(np.float32), hdr)])


def map_positions(xy, wcs_from: WCS, wcs_to: WCS) -> np.ndarray:
    """Pixel positions (N, 2) carried from one grid to another through the sky."""
    from astropy.wcs.utils import pixel_to_pixel

    xy = np.atleast_2d(np.asarray(xy, dtype=float))
    x, y = pixel_to_pixel(wcs_from.celestial, wcs_to.celestial, xy[:, 0], xy[:, 1])
    return np.column_stack([x, y])


def hdul_wcs(hdul: fits.HDUList) -> WCS:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return WCS(_image_hdu(hdul).header).celestial


# --------------------------------------------------------------------------- an independent PSF
@dataclass
class StarPSF:
    """A PSF stacked from stars (unit sum, odd side) and how it was made."""

    stamp: np.ndarray
    fwhm: float  # pixels, from the area above half maximum of the stack
    n_stars: int
    positions: np.ndarray  # (n, 2) fitted centres of the stars used
    fwhm_each: np.ndarray  # FWHM of a 2-D Gaussian fitted to each star


def _sep_background(image, bad):
    import sep

    d = np.ascontiguousarray(np.where(bad, np.nanmedian(image[~bad]), image), dtype=np.float32)
    ped = float(np.median(d))
    bk = sep.Background(d - ped, mask=np.ascontiguousarray(bad, dtype=np.uint8), bw=32, bh=32)
    return bk.back() + ped, float(bk.globalrms)


def _gauss_fit(stamp, x0, y0, fwhm0):
    """Centre and FWHM of an elliptical 2-D Gaussian plus constant fitted to a stamp."""
    from scipy.optimize import least_squares

    ny, nx = stamp.shape
    yy, xx = np.mgrid[0:ny, 0:nx].astype(float)
    s0 = fwhm0 / 2.3548

    def model(p):
        a, x, y, sx, sy, c = p
        return a * np.exp(-0.5 * (((xx - x) / sx) ** 2 + ((yy - y) / sy) ** 2)) + c

    p0 = [float(np.nanmax(stamp)), x0, y0, s0, s0, 0.0]
    r = least_squares(lambda p: (model(p) - stamp).ravel(), p0,
                      bounds=([0, x0 - 3, y0 - 3, 0.3, 0.3, -np.inf], [np.inf, x0 + 3, y0 + 3, 20, 20, np.inf]))
    a, x, y, sx, sy, c = r.x
    return float(x), float(y), float(2.3548 * np.sqrt(sx * sy))


def pick_stars(image: np.ndarray, bad: np.ndarray | None = None, *, n_max: int = 25, min_snr: float = 40.0,
               saturation: float | None = None) -> np.ndarray:
    """Bright, isolated, round, unsaturated point sources for :func:`star_psf` (positions (n, 2)).

    Point sources are the most concentrated bright objects: the peak/flux
    ratio within 25% of the highest quartile's median (galaxies are less
    concentrated), axis ratio > 0.7, no neighbour within 8 semi-major axes,
    no flat top (saturation).
    """
    import sep

    img = np.asarray(image, dtype=np.float64)
    b = ~np.isfinite(img) if bad is None else (np.asarray(bad, bool) | ~np.isfinite(img))
    level, rms = _sep_background(img, b)
    resid = np.ascontiguousarray(np.where(b, 0.0, img - level), dtype=np.float32)
    sep.set_extract_pixstack(max(sep.get_extract_pixstack(), resid.size))
    obj = sep.extract(resid, 5.0, err=rms, mask=np.ascontiguousarray(b, dtype=np.uint8), minarea=5)
    if len(obj) == 0:
        return np.zeros((0, 2))
    snr = obj["flux"] / (rms * np.sqrt(np.maximum(obj["npix"], 1)))
    conc = obj["peak"] / np.maximum(obj["flux"], 1e-30)
    bright = snr > min_snr
    if bright.sum() < 3:
        return np.zeros((0, 2))
    ref = np.median(np.sort(conc[bright])[-max(3, bright.sum() // 4):])
    ok = bright & (conc > 0.75 * ref) & (obj["b"] / obj["a"] > 0.7) & (obj["flag"] == 0)
    if saturation:
        ok &= obj["peak"] + level[obj["y"].astype(int), obj["x"].astype(int)] < 0.8 * saturation
    xs, ys = obj["x"], obj["y"]
    d = np.hypot(xs[:, None] - xs[None, :], ys[:, None] - ys[None, :])
    np.fill_diagonal(d, np.inf)
    ok &= d.min(axis=1) > 8 * np.maximum(obj["a"], 1.0)
    ny, nx = img.shape
    margin = 20
    ok &= (xs > margin) & (xs < nx - margin) & (ys > margin) & (ys < ny - margin)
    idx = np.nonzero(ok)[0]
    # flat tops: several pixels within 1% of the peak
    keep = []
    for i in idx:
        cx, cy = int(round(xs[i])), int(round(ys[i]))
        core = resid[cy - 2:cy + 3, cx - 2:cx + 3]
        if (core > 0.99 * core.max()).sum() <= 2:
            keep.append(i)
    keep = sorted(keep, key=lambda i: -obj["flux"][i])[:n_max]
    return np.column_stack([xs[keep], ys[keep]])


def star_psf(image: np.ndarray, positions, *, size: int | None = None, bad: np.ndarray | None = None,
             fwhm_guess: float = 4.0) -> StarPSF:
    """Median stack of stars at ``positions`` (hand-picked or from :func:`pick_stars`), unit sum.

    Each star: background from the median of an annulus outside the stamp's
    inner part, centre from a 2-D Gaussian fit, spline-shifted onto the
    stamp centre, divided by its flux within the stamp. Stars whose stamp
    touches a bad pixel or the border are skipped.
    """
    from scipy import ndimage

    img = np.asarray(image, dtype=np.float64)
    b = ~np.isfinite(img) if bad is None else (np.asarray(bad, bool) | ~np.isfinite(img))
    size = size or int(2 * np.ceil(3.5 * fwhm_guess) + 1)
    size += size % 2 == 0
    half = size // 2
    big = half + 4
    ny, nx = img.shape
    stamps, cents, fw = [], [], []
    yy, xx = np.mgrid[-big:big + 1, -big:big + 1]
    rr = np.hypot(xx, yy)
    annulus = (rr > half) & (rr <= big)
    for x, y in np.atleast_2d(positions):
        cx, cy = int(round(x)), int(round(y))
        if cx - big < 0 or cy - big < 0 or cx + big >= nx or cy + big >= ny:
            continue
        sl = (slice(cy - big, cy + big + 1), slice(cx - big, cx + big + 1))
        if b[sl].any():
            continue
        st = img[sl].copy()
        st -= np.median(st[annulus])
        core = st[big - half:big + half + 1, big - half:big + half + 1]
        fx, fy, f = _gauss_fit(core, half + (x - cx), half + (y - cy), fwhm_guess)
        dx, dy = fx - half, fy - half
        if abs(dx) > 2 or abs(dy) > 2:
            continue
        shifted = ndimage.shift(st, (-dy, -dx), order=3, mode="nearest")[big - half:big + half + 1,
                                                                           big - half:big + half + 1]
        total = shifted.sum()
        if total <= 0:
            continue
        stamps.append(shifted / total)
        cents.append((cx + dx, cy + dy))
        fw.append(f)
    if not stamps:
        raise ValueError("no usable star for the PSF stack")
    psf = np.median(np.stack(stamps), axis=0) if len(stamps) >= 3 else np.mean(np.stack(stamps), axis=0)
    r = np.hypot(*np.mgrid[-half:half + 1, -half:half + 1])
    psf = np.where(r <= half, np.clip(psf, 0, None), 0.0)
    psf /= psf.sum()
    # FWHM from the area above half maximum, on a 5x finer grid
    fine = ndimage.zoom(psf, 5, order=3)
    area = (fine >= 0.5 * fine.max()).sum() / 25.0
    return StarPSF(psf, float(2 * np.sqrt(area / np.pi)), len(stamps), np.array(cents), np.array(fw))


def shifted_psf(psf: np.ndarray, dx: float, dy: float) -> np.ndarray:
    """The PSF stamp moved by a sub-pixel (dx, dy), unit sum."""
    from scipy import ndimage

    out = ndimage.shift(np.asarray(psf, dtype=np.float64), (dy, dx), order=3, mode="constant")
    out = np.clip(out, 0, None)
    return out / out.sum()


# --------------------------------------------------------------------------- empirical noise and S/N
def source_mask(image: np.ndarray, bad: np.ndarray | None = None, nsigma: float = 2.0, grow: int = 4) -> np.ndarray:
    """Pixels of sources (SEP segmentation at ``nsigma``, grown by ``grow`` pixels) and bad pixels."""
    import sep
    from scipy import ndimage

    img = np.asarray(image, dtype=np.float64)
    b = ~np.isfinite(img) if bad is None else (np.asarray(bad, bool) | ~np.isfinite(img))
    level, rms = _sep_background(img, b)
    resid = np.ascontiguousarray(np.where(b, 0.0, img - level), dtype=np.float32)
    sep.set_extract_pixstack(max(sep.get_extract_pixstack(), resid.size))
    _, seg = sep.extract(resid, nsigma, err=rms, mask=np.ascontiguousarray(b, dtype=np.uint8), minarea=3,
                         segmentation_map=True)
    src = ndimage.binary_dilation(seg > 0, iterations=grow) if grow else seg > 0
    return src | b


def flux_noise(image: np.ndarray, psf: np.ndarray, avoid: np.ndarray, *, n: int = 3000, seed: int = 0) -> float:
    """1-sigma PSF-photometry flux noise on blank sky: sum(P I) / sum(P^2) at random source-free positions.

    ``avoid`` marks sources and bad pixels; a position is used only when its
    whole stamp avoids them. The background is SEP's mesh; the spread is a
    3-sigma-clipped standard deviation. This is the empirical matched-filter
    noise, correlations included.
    """
    img = np.asarray(image, dtype=np.float64)
    level, _ = _sep_background(img, avoid | ~np.isfinite(img))
    resid = img - level
    p = np.asarray(psf, dtype=np.float64)
    p = p / p.sum()
    h = p.shape[0] // 2
    ny, nx = img.shape
    rng = np.random.default_rng(seed)
    fl = []
    tries = 0
    while len(fl) < n and tries < 40 * n:
        tries += 1
        x = int(rng.integers(h, nx - h))
        y = int(rng.integers(h, ny - h))
        sl = (slice(y - h, y + h + 1), slice(x - h, x + h + 1))
        if avoid[sl].any():
            continue
        fl.append(float((p * resid[sl]).sum() / (p * p).sum()))
    fl = np.asarray(fl)
    if fl.size < 30:
        raise ValueError(f"only {fl.size} blank positions to measure the flux noise on")
    med = np.median(fl)
    s = 1.4826 * np.median(np.abs(fl - med))
    for _ in range(5):
        k = np.abs(fl - med) < 3 * s
        s = float(np.std(fl[k])) / 0.9866  # the std of a Gaussian clipped at 3 sigma is 0.9866 sigma
        med = float(np.median(fl[k]))
    return float(s)


def difference_snr_per_flux(psf_n: np.ndarray, psf_r: np.ndarray, sigma_flux_n: float, sigma_flux_r: float,
                            side: int = 128) -> float:
    """Optimal S/N per unit flux of a new point source in the difference of two images (the ZOGY limit).

    With white-noise-equivalent sigmas s_n = sigma_flux_n sqrt(sum Pn^2) and
    s_r (both in the science image's flux units), the S/N of flux a is
    a * sqrt(sum_k |Pn^|^2 |Pr^|^2 / (s_n^2 |Pr^|^2 + s_r^2 |Pn^|^2) / n_pix);
    it tends to a / sigma_flux_n when the reference is noiseless.
    """
    def embed(p):
        p = np.asarray(p, dtype=np.float64)
        p = p / p.sum()
        out = np.zeros((side, side))
        out[:p.shape[0], :p.shape[1]] = p
        return np.roll(out, (-(p.shape[0] // 2), -(p.shape[1] // 2)), axis=(0, 1))

    pn, pr = embed(psf_n), embed(psf_r)
    sn = sigma_flux_n * np.sqrt((pn ** 2).sum())
    sr = sigma_flux_r * np.sqrt((pr ** 2).sum())
    fn, fr = np.abs(np.fft.fft2(pn)) ** 2, np.abs(np.fft.fft2(pr)) ** 2
    val = (fn * fr / (sn ** 2 * fr + sr ** 2 * fn + 1e-300)).sum() / side ** 2
    return float(np.sqrt(val))


# --------------------------------------------------------------------------- injections and scoring
def plan_injections(shape: tuple[int, int], snrs, avoid: np.ndarray, *, min_sep: float, margin: int,
                    seed: int = 0, keep_away: list[tuple[float, float, float]] = ()) -> np.ndarray:
    """Random sub-pixel positions (n, 2) on blank sky, ``min_sep`` apart, ``margin`` from the borders.

    ``avoid`` marks pixels to keep clear (sources, masks); ``keep_away`` is a
    list of (x, y, radius) to avoid as well (known transients). Fewer
    positions than requested are returned when the field is full.
    """
    rng = np.random.default_rng(seed)
    ny, nx = shape
    out: list[tuple[float, float]] = []
    n = len(list(snrs))
    tries = 0
    while len(out) < n and tries < 20000:
        tries += 1
        x = rng.uniform(margin, nx - 1 - margin)
        y = rng.uniform(margin, ny - 1 - margin)
        xi, yi = int(round(x)), int(round(y))
        r = 3
        if avoid[max(0, yi - r):yi + r + 1, max(0, xi - r):xi + r + 1].any():
            continue
        if any(np.hypot(x - a, y - b) < max(rad, min_sep) for a, b, rad in keep_away):
            continue
        if any(np.hypot(x - a, y - b) < min_sep for a, b in out):
            continue
        out.append((x, y))
    return np.array(out).reshape(-1, 2)


def inject_point_sources(image: np.ndarray, psf: np.ndarray, positions, fluxes) -> np.ndarray:
    """The image plus point sources (the PSF shifted to each sub-pixel position, times its flux)."""
    out = np.array(image, dtype=np.float64, copy=True)
    p = np.asarray(psf, dtype=np.float64)
    h = p.shape[0] // 2
    ny, nx = out.shape
    for (x, y), f in zip(np.atleast_2d(positions), np.atleast_1d(fluxes)):
        cx, cy = int(round(x)), int(round(y))
        st = shifted_psf(p, x - cx, y - cy) * f
        y0, y1, x0, x1 = cy - h, cy + h + 1, cx - h, cx + h + 1
        sy0, sx0 = max(0, -y0), max(0, -x0)
        sy1, sx1 = st.shape[0] - max(0, y1 - ny), st.shape[1] - max(0, x1 - nx)
        out[max(0, y0):min(ny, y1), max(0, x0):min(nx, x1)] += st[sy0:sy1, sx0:sx1]
    return out


@dataclass
class InjectionScore:
    """What a candidate catalog recovered of a set of injections."""

    by_snr: dict  # snr -> {"n", "recovered", "detected"}
    false_clean: list  # [(x, y, snr)] clean candidates matching nothing known
    artifacts_clean: list  # known artifacts that came out clean
    known_found: list  # known real transients found clean
    n_pixels: int
    details: list = field(default_factory=list)

    @property
    def false_per_mpix(self) -> float:
        return len(self.false_clean) / (self.n_pixels / 1e6)

    def recovery(self, snr) -> float:
        b = self.by_snr.get(snr)
        return b["recovered"] / b["n"] if b and b["n"] else float("nan")

    def recovery_at_least(self, snr_min) -> float:
        n = sum(v["n"] for k, v in self.by_snr.items() if k >= snr_min)
        r = sum(v["recovered"] for k, v in self.by_snr.items() if k >= snr_min)
        return r / n if n else float("nan")


def score_injections(cands, positions, snrs, *, radius: float, n_pixels: int,
                     known: list[tuple[float, float, float]] = (),
                     artifacts: list[tuple[float, float, float]] = ()) -> InjectionScore:
    """Match a candidate table (x, y, snr, sign, clean) to injections, known transients and artifacts.

    An injection is *recovered* by a clean positive candidate within
    ``radius`` and *detected* by any positive candidate there. Clean
    candidates near neither an injection, a known transient nor a known
    artifact are false. ``known``/``artifacts`` are (x, y, radius) lists.
    """
    cx = np.asarray(cands["x"], float)
    cy = np.asarray(cands["y"], float)
    clean = np.asarray(cands["clean"], bool)
    pos = np.asarray(cands["sign"]) > 0
    used = np.zeros(len(cx), bool)
    by: dict = {}
    details = []
    for (x, y), s in zip(np.atleast_2d(positions), np.atleast_1d(snrs)):
        d = np.hypot(cx - x, cy - y)
        near = (d < radius) & pos
        rec = bool((near & clean).any())
        det = bool(near.any())
        used |= d < radius
        b = by.setdefault(float(s), {"n": 0, "recovered": 0, "detected": 0})
        b["n"] += 1
        b["recovered"] += rec
        b["detected"] += det
        details.append(dict(x=float(x), y=float(y), snr=float(s), recovered=rec, detected=det))

    def clean_near(places):
        found = []
        for x, y, r in places:
            d = np.hypot(cx - x, cy - y) < r
            used[:] |= d
            if (d & clean).any():
                found.append((x, y))
        return found

    known_found = clean_near(known)
    arts = clean_near(artifacts)
    snr_col = np.asarray(cands["snr"], float)
    false = [(float(cx[i]), float(cy[i]), float(snr_col[i])) for i in np.nonzero(clean & ~used)[0]]
    return InjectionScore(dict(sorted(by.items())), false, arts, known_found, int(n_pixels), details)


def holdout_std(scorr: np.ndarray, blank: np.ndarray, block: int) -> tuple[float, int]:
    """Robust std of S_corr on blank pixels of the held-out checkerboard colour (see ``zogy.holdout_blocks``)."""
    from astrid_pipeline.science.stats import robust_std
    from astrid_pipeline.science.zogy import holdout_blocks

    m = np.asarray(blank, bool) & np.isfinite(scorr) & holdout_blocks(scorr.shape, block)
    return robust_std(scorr[m]), int(m.sum())
