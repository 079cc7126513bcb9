"""The simulated survey: a deterministic science/reference pair for any sky position.

For a field centre (RA, Dec) and a seed, :func:`simulate_pair` makes

- a sky of stars (power-law number counts) and Sersic galaxies, fixed in
  RA/Dec, rendered through each epoch's own celestial WCS;
- a **reference** epoch: deep (a stack of ``reference_ncombine`` exposures),
  sharp (small Moffat FWHM), north-up TAN WCS on the field centre;
- a **science** epoch: shallower, broader PSF, pointing offset by a few
  pixels and rotated by a fraction of a degree, a different flux scale
  (exposure time), sky with a gradient, Poisson and read noise, saturation,
  bad columns (listed in a MASK extension as a real pipeline's bad-pixel map
  would be) and cosmic-ray hits (not masked: they must be found);
- transients injected into the science epoch with a truth table: supernovae
  offset from a host galaxy, variable stars brightening or fading, novae,
  asteroids that moved between the epochs (a positive and a negative) or
  trailed, and faint sources near the detection limit. Each row carries its
  expected S/N: the optimal (ZOGY) detection S/N of that change given the
  true PSFs and the local noise, i.e. the physical limit of detection.

All randomness flows from one ``numpy.random.Generator`` seeded from the
seed and the region name, so the same inputs give bit-identical files.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd
from astropy.io import fits
from astropy.wcs import WCS

from astrid_pipeline.errors import ConfigError
from astrid_pipeline.science.psf import moffat_stamp
from astrid_pipeline.science.zogy import point_source_snr

TRANSIENT_TYPES = ("supernova", "variable", "nova", "asteroid", "asteroid_trailed", "faint")

#: Bits of the MASK extension.
MASK_BAD_COLUMN = 1
MASK_SATURATED = 2


@dataclass
class SurveyConfig:
    """Parameters of the simulated survey (defaults: a 1024x1024, 0.26"/px camera)."""

    shape: tuple[int, int] = (1024, 1024)
    pixel_scale: float = 0.26  # arcsec / pixel
    seed: int = 0
    star_density: float = 1500.0  # stars per 10^6 pixels
    galaxy_density: float = 400.0  # galaxies per 10^6 pixels
    star_min_flux: float = 150.0  # science ADU
    star_max_flux: float = 3.0e6
    star_count_slope: float = 0.75  # N(>F) ~ F^-slope
    galaxy_min_flux: float = 300.0
    galaxy_max_flux: float = 3.0e5
    gain: float = 2.0  # e-/ADU
    read_noise: float = 5.0  # e- per read
    saturation: float = 60000.0  # ADU
    zeropoint: float = 30.0  # science mag of 1 ADU total
    exptime_science: float = 120.0
    exptime_reference: float = 600.0
    reference_ncombine: int = 5
    sky_science: float = 300.0  # ADU / pixel
    sky_gradient: float = 0.02  # fractional change across the field
    fwhm_science: tuple[float, float] = (2.8, 3.6)
    fwhm_reference: tuple[float, float] = (1.9, 2.4)
    moffat_beta: float = 3.0
    offset_px: tuple[float, float] = (2.0, 6.0)
    rotation_deg: tuple[float, float] = (0.1, 0.5)
    n_bad_columns: int = 3
    cosmic_ray_density: float = 60.0  # hits per 10^6 pixels in the science exposure
    cosmic_ray_charge: tuple[float, float] = (300.0, 30000.0)  # e-, log-uniform
    n_supernova: int = 3
    n_variable: int = 3
    n_nova: int = 2
    n_asteroid: int = 1
    n_asteroid_trailed: int = 1
    n_faint: int = 3
    snr_range: tuple[float, float] = (10.0, 60.0)
    faint_snr_range: tuple[float, float] = (3.0, 8.0)
    science_mjd: float = 61000.25
    reference_mjd: float = 60400.10
    edge_margin: int = 40  # transients kept this far from the edges
    filter_name: str = "r"

    def validate(self) -> "SurveyConfig":
        ny, nx = self.shape
        if ny < 128 or nx < 128:
            raise ConfigError(f"simulated image shape {self.shape} is too small: at least 128x128")
        for name in ("pixel_scale", "gain", "saturation", "exptime_science", "exptime_reference", "sky_science"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)}")
        if self.read_noise < 0:
            raise ConfigError(f"read_noise must be >= 0, got {self.read_noise}")
        for name in ("fwhm_science", "fwhm_reference", "offset_px", "rotation_deg", "snr_range",
                     "faint_snr_range", "cosmic_ray_charge"):
            lo, hi = getattr(self, name)
            if lo > hi:
                raise ConfigError(f"{name}: min {lo} > max {hi}")
        if self.fwhm_science[0] < 1.0 or self.fwhm_reference[0] < 1.0:
            raise ConfigError("PSF FWHM below 1 pixel is not supported")
        for t in ("supernova", "variable", "nova", "asteroid", "asteroid_trailed", "faint"):
            if getattr(self, f"n_{t}") < 0:
                raise ConfigError(f"n_{t} must be >= 0")
        return self

    @property
    def flux_scale_reference(self) -> float:
        """Reference ADU per science ADU of the same source."""
        return self.exptime_reference / self.exptime_science


@dataclass
class SimulatedPair:
    science: fits.HDUList
    reference: fits.HDUList
    truth: pd.DataFrame
    cosmic_rays: pd.DataFrame
    meta: dict = field(default_factory=dict)


def region_seed(region: str, seed: int) -> int:
    """A stable 32-bit seed from a region name and a base seed (independent of PYTHONHASHSEED)."""
    return (zlib.crc32(region.encode("utf-8")) ^ (seed * 0x9E3779B1)) & 0xFFFFFFFF


def tan_wcs(ra: float, dec: float, shape: tuple[int, int], scale_arcsec: float, rotation_deg: float = 0.0,
            crpix: tuple[float, float] | None = None) -> WCS:
    """A TAN WCS with north up / east left rotated by ``rotation_deg`` (counter-clockwise)."""
    ny, nx = shape
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.cunit = ["deg", "deg"]
    w.wcs.crval = [ra % 360.0, dec]
    w.wcs.crpix = list(crpix) if crpix is not None else [nx / 2 + 0.5, ny / 2 + 0.5]
    s = scale_arcsec / 3600.0
    th = math.radians(rotation_deg)
    w.wcs.cd = [[-s * math.cos(th), s * math.sin(th)], [s * math.sin(th), s * math.cos(th)]]
    w.wcs.radesys = "ICRS"
    w.pixel_shape = (nx, ny)
    return w


def _power_law(rng, n, fmin, fmax, slope):
    u = rng.random(n)
    f = fmin * (1 - u) ** (-1.0 / slope)
    return np.minimum(f, fmax)


def _sersic_b(n):
    return 2 * n - 1 / 3 + 0.009876 / n


def _sersic_stamp(re, n, q, pa, dx, dy, size, core=0.3):
    """Pixel-integrated Sersic profile; the cusp is softened over ``core`` pixels so that 4x4
    sub-sampling integrates it to better than a percent whatever the pixel phase (an n=4 cusp
    sampled on two different grids would otherwise leave core residuals no real sky has)."""
    half = size // 2
    o = 4
    sub = (np.arange(o) + 0.5) / o - 0.5
    g = np.arange(-half, half + 1)
    yy = g[:, None, None, None] + sub[None, None, :, None] - dy
    xx = g[None, :, None, None] + sub[None, None, None, :] - dx
    c, s = np.cos(pa), np.sin(pa)
    xr = c * xx + s * yy
    yr = -s * xx + c * yy
    r = np.sqrt(xr**2 * q + yr**2 / q + core**2)
    img = np.exp(-_sersic_b(n) * ((r / re) ** (1.0 / n) - 1)).mean(axis=(2, 3))
    return img / img.sum()


def _add_stamp(image, stamp, x, y):
    """Add a stamp whose central pixel lands on round(x), round(y); clipped at edges."""
    h = stamp.shape[0] // 2
    w = stamp.shape[1] // 2
    cx, cy = int(round(x)), int(round(y))
    ny, nx = image.shape
    x0, x1 = cx - w, cx + w + 1
    y0, y1 = cy - h, cy + h + 1
    sx0, sy0 = max(0, -x0), max(0, -y0)
    sx1 = stamp.shape[1] - max(0, x1 - nx)
    sy1 = stamp.shape[0] - max(0, y1 - ny)
    if sx0 >= sx1 or sy0 >= sy1:
        return
    image[max(0, y0):min(ny, y1), max(0, x0):min(nx, x1)] += stamp[sy0:sy1, sx0:sx1]


def _render_points(image, xs, ys, fluxes, fwhm, beta):
    """Render point sources with a pixel-integrated Moffat PSF, vectorised by stamp size."""
    xs, ys, fluxes = (np.asarray(v, float) for v in (xs, ys, fluxes))
    sizes = np.where(fluxes < 5e3, 15, np.where(fluxes < 1e5, 31, 63))
    alpha = fwhm / (2 * np.sqrt(2 ** (1 / beta) - 1))
    o = 3
    sub = (np.arange(o) + 0.5) / o - 0.5
    for size in (15, 31, 63):
        sel = np.nonzero(sizes == size)[0]
        if sel.size == 0:
            continue
        half = size // 2
        g = np.arange(-half, half + 1)
        for chunk in np.array_split(sel, max(1, sel.size // 200)):
            dx = xs[chunk] - np.round(xs[chunk])
            dy = ys[chunk] - np.round(ys[chunk])
            px = (g[None, :, None] + sub[None, None, :]) - dx[:, None, None]  # (n, size, o)
            py = (g[None, :, None] + sub[None, None, :]) - dy[:, None, None]
            r2 = px[:, None, :, None, :] ** 2 + py[:, :, None, :, None] ** 2  # (n, sy, sx, o, o)
            prof = ((1 + r2 / alpha**2) ** (-beta)).mean(axis=(3, 4))
            # normalise to the untruncated Moffat integral so truncation loses (tiny) wing flux
            prof *= (beta - 1) / (np.pi * alpha**2)
            prof *= fluxes[chunk][:, None, None]
            for k, i in enumerate(chunk):
                _add_stamp(image, prof[k], xs[i], ys[i])


def _pixel_angle(w_from: WCS, w_to: WCS, x, y) -> float:
    """Rotation (radians) of the pixel axes of ``w_to`` relative to ``w_from`` near (x, y)."""
    sky = w_from.pixel_to_world([x, x + 10.0], [y, y])
    tx, ty = w_to.world_to_pixel(sky)
    return float(np.arctan2(ty[1] - ty[0], tx[1] - tx[0]))


@dataclass
class _Sky:
    star_ra: np.ndarray
    star_dec: np.ndarray
    star_flux: np.ndarray
    gal_ra: np.ndarray
    gal_dec: np.ndarray
    gal_flux: np.ndarray
    gal_re: np.ndarray
    gal_n: np.ndarray
    gal_q: np.ndarray
    gal_pa: np.ndarray  # in the reference pixel frame


def _make_sky(rng, cfg: SurveyConfig, wref: WCS) -> _Sky:
    ny, nx = cfg.shape
    m = 3 * cfg.offset_px[1] + 40
    area = (nx + 2 * m) * (ny + 2 * m) / 1e6
    ns = rng.poisson(cfg.star_density * area)
    ng = rng.poisson(cfg.galaxy_density * area)
    sx = rng.uniform(-m, nx + m, ns)
    sy = rng.uniform(-m, ny + m, ns)
    sf = _power_law(rng, ns, cfg.star_min_flux, cfg.star_max_flux, cfg.star_count_slope)
    gx = rng.uniform(-m, nx + m, ng)
    gy = rng.uniform(-m, ny + m, ng)
    gf = _power_law(rng, ng, cfg.galaxy_min_flux, cfg.galaxy_max_flux, 0.9)
    gre = np.clip(1.2 * (gf / cfg.galaxy_min_flux) ** 0.25 * rng.lognormal(0, 0.3, ng), 1.0, 12.0)
    gn = np.where(rng.random(ng) < 0.7, 1.0, 4.0)
    gq = rng.uniform(0.4, 1.0, ng)
    gpa = rng.uniform(0, np.pi, ng)
    s_sky = wref.pixel_to_world(sx, sy)
    g_sky = wref.pixel_to_world(gx, gy)
    return _Sky(s_sky.ra.deg, s_sky.dec.deg, sf, g_sky.ra.deg, g_sky.dec.deg, gf, gre, gn, gq, gpa)


def _render_epoch(cfg, sky: _Sky, w: WCS, wref: WCS, fwhm, flux_scale, extra_points=()):
    """Noise-free image of the sky through WCS ``w`` (ADU of that epoch)."""
    from astropy.coordinates import SkyCoord
    from scipy.signal import fftconvolve

    ny, nx = cfg.shape
    image = np.zeros((ny, nx), dtype=np.float64)
    xs, ys = w.world_to_pixel(SkyCoord(sky.star_ra, sky.star_dec, unit="deg"))
    inside = (xs > -40) & (xs < nx + 40) & (ys > -40) & (ys < ny + 40)
    _render_points(image, xs[inside], ys[inside], sky.star_flux[inside] * flux_scale, fwhm, cfg.moffat_beta)
    gx, gy = w.world_to_pixel(SkyCoord(sky.gal_ra, sky.gal_dec, unit="deg"))
    rot = _pixel_angle(wref, w, nx / 2, ny / 2)
    psf = moffat_stamp(fwhm, 31, cfg.moffat_beta)
    for i in np.nonzero((gx > -60) & (gx < nx + 60) & (gy > -60) & (gy < ny + 60))[0]:
        size = int(min(2 * math.ceil(6 * sky.gal_re[i]) + 1, 101))
        dx, dy = gx[i] - round(gx[i]), gy[i] - round(gy[i])
        intrinsic = _sersic_stamp(sky.gal_re[i], sky.gal_n[i], sky.gal_q[i], sky.gal_pa[i] + rot, dx, dy, size)
        stamp = fftconvolve(intrinsic, psf, mode="full") * (sky.gal_flux[i] * flux_scale)
        _add_stamp(image, stamp, gx[i], gy[i])
    for (x, y, stamp) in extra_points:
        _add_stamp(image, stamp, x, y)
    return image


def _observe(rng, model, sky_level, gradient, gain, read_noise_e, saturation):
    ny, nx = model.shape
    yy, xx = np.mgrid[0:ny, 0:nx]
    sky = sky_level * (1 + gradient * ((xx / nx - 0.5) + 0.5 * (yy / ny - 0.5)))
    electrons = rng.poisson(np.clip((model + sky) * gain, 0, None)).astype(np.float64)
    electrons += rng.normal(0.0, read_noise_e, size=model.shape)
    adu = electrons / gain
    saturated = adu >= saturation
    adu = np.minimum(adu, saturation)
    return adu, saturated, sky


def _cosmic_rays(rng, cfg: SurveyConfig, image):
    """Add cosmic-ray hits (spots and tracks) in ADU; returns their truth table."""
    ny, nx = cfg.shape
    n = rng.poisson(cfg.cosmic_ray_density * nx * ny / 1e6)
    rows = []
    lo, hi = np.log(cfg.cosmic_ray_charge[0]), np.log(cfg.cosmic_ray_charge[1])
    for k in range(n):
        charge = float(np.exp(rng.uniform(lo, hi)))
        x0, y0 = rng.uniform(2, nx - 3), rng.uniform(2, ny - 3)
        if rng.random() < 0.6:
            # spot: most charge in one pixel, some shared with neighbours
            cx, cy = int(x0), int(y0)
            share = rng.dirichlet(np.ones(4) * 0.6) * rng.uniform(0.0, 0.4)
            main = 1.0 - share.sum()
            pix = [(cy, cx, main), (cy, cx + 1, share[0]), (cy + 1, cx, share[1]), (cy, cx - 1, share[2]), (cy - 1, cx, share[3])]
            kind = "spot"
            length = 1.0
        else:
            length = rng.uniform(3, 15)
            ang = rng.uniform(0, np.pi)
            t = np.linspace(0, length, int(length * 4) + 1)
            px = np.clip(x0 + t * np.cos(ang), 0, nx - 1)
            py = np.clip(y0 + t * np.sin(ang), 0, ny - 1)
            ix, iy = px.astype(int), py.astype(int)
            keys, counts = np.unique(iy * nx + ix, return_counts=True)
            pix = [(int(kk // nx), int(kk % nx), c / counts.sum()) for kk, c in zip(keys, counts)]
            kind = "track"
        npix = 0
        for (yy, xx, frac) in pix:
            if 0 <= yy < ny and 0 <= xx < nx and frac > 0:
                image[yy, xx] += charge * frac / cfg.gain
                npix += 1
        rows.append(dict(cr_id=k, kind=kind, x=float(x0), y=float(y0), length_px=float(length),
                         charge_e=charge, npix=npix))
    return pd.DataFrame(rows, columns=["cr_id", "kind", "x", "y", "length_px", "charge_e", "npix"])


def _trail_stamp(fwhm, beta, length, angle, dx, dy, size):
    n = max(2, int(length * 2))
    acc = np.zeros((size, size))
    for t in np.linspace(-length / 2, length / 2, n):
        acc += moffat_stamp(fwhm, size, beta, dx + t * np.cos(angle), dy + t * np.sin(angle), oversample=2)
    return acc / acc.sum()


def simulate_pair(ra: float, dec: float, region: str = "field", config: SurveyConfig | None = None) -> SimulatedPair:
    """Simulate a science/reference pair with injected transients (see module docstring)."""
    cfg = (config or SurveyConfig()).validate()
    if not (-90.0 <= dec <= 90.0):
        raise ConfigError(f"Dec {dec} is outside [-90, 90]")
    seed = region_seed(region, cfg.seed)
    rng = np.random.default_rng(seed)
    ny, nx = cfg.shape
    fwhm_s = float(rng.uniform(*cfg.fwhm_science))
    fwhm_r = float(rng.uniform(*cfg.fwhm_reference))
    wref = tan_wcs(ra, dec, cfg.shape, cfg.pixel_scale)
    off = rng.uniform(*cfg.offset_px)
    ang = rng.uniform(0, 2 * np.pi)
    rot = float(rng.uniform(*cfg.rotation_deg) * rng.choice([-1, 1]))
    c_sky = wref.pixel_to_world(nx / 2 - 0.5 + off * np.cos(ang), ny / 2 - 0.5 + off * np.sin(ang))
    wsci = tan_wcs(float(c_sky.ra.deg), float(c_sky.dec.deg), cfg.shape, cfg.pixel_scale * (1 + rng.normal(0, 2e-4)), rot)

    sky = _make_sky(rng, cfg, wref)
    fs = cfg.flux_scale_reference
    gain_r = cfg.gain
    rn_r = cfg.read_noise * np.sqrt(cfg.reference_ncombine)
    sky_r = cfg.sky_science * fs

    model_sci = _render_epoch(cfg, sky, wsci, wref, fwhm_s, 1.0)
    model_ref = _render_epoch(cfg, sky, wref, wref, fwhm_r, fs)

    # background noise per pixel (ADU), used to turn target S/N into fluxes
    sig_n = np.sqrt(cfg.sky_science * cfg.gain + cfg.read_noise**2) / cfg.gain
    sig_r = np.sqrt(sky_r * gain_r + rn_r**2) / gain_r
    psf_n = moffat_stamp(fwhm_s, 63, cfg.moffat_beta)
    psf_r = moffat_stamp(fwhm_r, 63, cfg.moffat_beta)

    def local_var(model, x, y, sig, gain, size):
        """Noise variance stamp (background + Poisson noise of the noise-free scene) around (x, y)."""
        half = size // 2
        cx, cy = int(round(x)), int(round(y))
        st = np.zeros((size, size))
        y0, y1 = max(0, cy - half), min(ny, cy + half + 1)
        x0, x1 = max(0, cx - half), min(nx, cx + half + 1)
        st[y0 - (cy - half): y1 - (cy - half), x0 - (cx - half): x1 - (cx - half)] = model[y0:y1, x0:x1]
        return sig**2 + np.clip(st, 0, None) / gain

    def snr_of(stamp_n, stamp_r, x, y):
        size = (stamp_n if stamp_r is None else stamp_r).shape[0]
        vn = local_var(model_sci, x, y, sig_n, cfg.gain, size)
        # the reference in science units: variance ratio^2 * R_adu / gain = R_sci * ratio / gain
        vr = local_var(model_ref, x, y, sig_r, gain_r, size)
        return point_source_snr(stamp_n, psf_n, psf_r, vn, vr, 1.0, fs, signal_r=stamp_r)

    unit_snr_cache: dict = {}

    def flux_for(target, x, y):
        key = (int(x) // 64, int(y) // 64)
        if key not in unit_snr_cache:
            unit_snr_cache[key] = snr_of(moffat_stamp(fwhm_s, 63, cfg.moffat_beta), None, x, y)
        return target / unit_snr_cache[key]

    m = cfg.edge_margin
    from astropy.coordinates import SkyCoord

    gx, gy = wsci.world_to_pixel(SkyCoord(sky.gal_ra, sky.gal_dec, unit="deg"))
    sx, sy = wsci.world_to_pixel(SkyCoord(sky.star_ra, sky.star_dec, unit="deg"))
    rsx, rsy = wref.world_to_pixel(SkyCoord(sky.star_ra, sky.star_dec, unit="deg"))

    def inside(x, y, margin=m):
        return (x > margin) & (x < nx - 1 - margin) & (y > margin) & (y < ny - 1 - margin)

    # keep injected things away from bright stars, and from each other
    bright = sky.star_flux > 3e4
    used: list[tuple[float, float]] = []

    def free(x, y, min_sep=25.0):
        if not inside(x, y):
            return False
        if any((x - ux) ** 2 + (y - uy) ** 2 < min_sep**2 for ux, uy in used):
            return False
        d2 = (sx[bright] - x) ** 2 + (sy[bright] - y) ** 2
        return not (d2 < 30.0**2).any()

    rows = []
    extra_sci = []
    extra_ref = []

    def point(x, y, flux, fwhm, size=31):
        dx, dy = x - round(x), y - round(y)
        return moffat_stamp(fwhm, size, cfg.moffat_beta, dx, dy) * flux

    def inject(kind, x, y, flux, stamp=None, host=(np.nan, np.nan), trail=0.0, **extra):
        """Record a science-epoch change and the stamp that adds it to the science scene."""
        rows.append(dict(type=kind, x=float(x), y=float(y), delta_flux=float(flux), host_x=float(host[0]),
                         host_y=float(host[1]), trail_length_px=float(trail), epoch="science", **extra))
        extra_sci.append((x, y, point(x, y, flux, fwhm_s) if stamp is None else stamp))
        used.append((float(x), float(y)))

    def random_free_position():
        for _ in range(500):
            x, y = rng.uniform(m, nx - 1 - m), rng.uniform(m, ny - 1 - m)
            if free(x, y):
                return x, y
        raise ConfigError("could not place a transient: the field is too crowded or too small")

    # supernovae near host galaxies
    hosts = np.nonzero(inside(gx, gy, m + 10) & (sky.gal_re > 1.5) & (sky.gal_flux > 2000) & (sky.gal_flux < 1e5))[0]
    rng.shuffle(hosts)
    n_sn = 0
    for h in hosts:
        if n_sn >= cfg.n_supernova:
            break
        r_off = sky.gal_re[h] * rng.uniform(0.5, 1.5)
        a = rng.uniform(0, 2 * np.pi)
        x, y = gx[h] + r_off * np.cos(a), gy[h] + r_off * np.sin(a)
        if not free(x, y):
            continue
        target = rng.uniform(*cfg.snr_range)
        flux = flux_for(target, x, y)
        inject("supernova", x, y, flux, host=(gx[h], gy[h]))
        n_sn += 1

    # variable stars: existing, unsaturated stars that brighten or fade
    cand = np.nonzero(inside(sx, sy) & (sky.star_flux > 1500) & (sky.star_flux < 2e4))[0]
    rng.shuffle(cand)
    n_var = 0
    for i in cand:
        if n_var >= cfg.n_variable:
            break
        if not free(sx[i], sy[i]):
            continue
        fade = (n_var % 3 == 2)
        frac = -rng.uniform(0.4, 0.8) if fade else rng.uniform(0.5, 3.0)
        flux = sky.star_flux[i] * frac
        inject("variable", sx[i], sy[i], flux)
        n_var += 1

    for _ in range(cfg.n_nova):
        x, y = random_free_position()
        inject("nova", x, y, flux_for(rng.uniform(*cfg.snr_range), x, y))

    for _ in range(cfg.n_asteroid):
        x, y = random_free_position()
        used.append((x, y))  # reserve it before choosing the reference-epoch position
        flux = flux_for(rng.uniform(*cfg.snr_range), x, y)
        # where it was at the reference epoch (in science pixels), and in reference pixels
        for _try in range(200):
            a = rng.uniform(0, 2 * np.pi)
            d = rng.uniform(40, 120)
            x2, y2 = x + d * np.cos(a), y + d * np.sin(a)
            if free(x2, y2):
                break
        else:
            x2, y2 = random_free_position()
        used.append((x2, y2))
        r_sky = wsci.pixel_to_world(x2, y2)
        rx, ry = wref.world_to_pixel(r_sky)
        inject("asteroid", x, y, flux)
        rows.append(dict(type="asteroid", x=float(x2), y=float(y2), delta_flux=-flux, host_x=np.nan, host_y=np.nan,
                         trail_length_px=0.0, epoch="reference"))
        extra_ref.append((float(rx), float(ry), point(float(rx), float(ry), flux * fs, fwhm_r)))

    for _ in range(cfg.n_asteroid_trailed):
        x, y = random_free_position()
        length = rng.uniform(8, 16)
        a = rng.uniform(0, np.pi)
        trail = _trail_stamp(fwhm_s, cfg.moffat_beta, length, a, x - round(x), y - round(y), 45)
        unit = snr_of(trail, None, x, y)
        flux = rng.uniform(*cfg.snr_range) / unit
        inject("asteroid_trailed", x, y, flux, stamp=trail * flux, trail=length, _angle=float(a))

    for _ in range(cfg.n_faint):
        x, y = random_free_position()
        inject("faint", x, y, flux_for(rng.uniform(*cfg.faint_snr_range), x, y))

    for (x, y, stamp) in extra_sci:
        _add_stamp(model_sci, stamp, x, y)
    for (x, y, stamp) in extra_ref:
        _add_stamp(model_ref, stamp, x, y)

    # expected (optimal) S/N of every change, with the final local noise
    for row in rows:
        x, y = row["x"], row["y"]
        if row["type"] == "asteroid_trailed":
            stamp = _trail_stamp(fwhm_s, cfg.moffat_beta, row["trail_length_px"], row["_angle"], 0.0, 0.0, 45) * row["delta_flux"]
            row["expected_snr"] = snr_of(stamp, None, x, y)
        elif row["epoch"] == "reference":
            stamp = moffat_stamp(fwhm_r, 63, cfg.moffat_beta) * abs(row["delta_flux"]) * fs
            row["expected_snr"] = snr_of(np.zeros_like(stamp), stamp, x, y)
        else:
            stamp = moffat_stamp(fwhm_s, 63, cfg.moffat_beta) * abs(row["delta_flux"])
            row["expected_snr"] = snr_of(stamp, None, x, y)

    sci, sat_s, _ = _observe(rng, model_sci, cfg.sky_science, cfg.sky_gradient, cfg.gain, cfg.read_noise, cfg.saturation)
    ref, sat_r, _ = _observe(rng, model_ref, sky_r, -cfg.sky_gradient, gain_r, rn_r, cfg.saturation)
    crs = _cosmic_rays(rng, cfg, sci)
    sci = np.minimum(sci, cfg.saturation)

    mask_s = np.zeros(cfg.shape, np.uint8)
    mask_s[sat_s | (sci >= cfg.saturation)] |= MASK_SATURATED
    # bad columns away from the injected transients, so recovery measures the method, not bad luck
    allowed = np.ones(nx, bool)
    allowed[:20] = allowed[nx - 20:] = False
    for row in rows:
        allowed[max(0, int(row["x"]) - 12): int(row["x"]) + 13] = False
    choices = np.nonzero(allowed)[0]
    cols = rng.choice(choices, size=min(cfg.n_bad_columns, choices.size), replace=False) if cfg.n_bad_columns else []
    for k, c in enumerate(cols):
        y0 = int(rng.integers(0, ny // 2)) if k % 2 else 0
        sci[y0:, c] = 0.0 if k % 3 == 2 else cfg.sky_science + 800.0 + rng.normal(0, 5, ny - y0)
        mask_s[y0:, c] |= MASK_BAD_COLUMN
    mask_r = np.zeros(cfg.shape, np.uint8)
    mask_r[sat_r] |= MASK_SATURATED

    truth = pd.DataFrame(rows)
    if len(truth):
        truth = truth.drop(columns=[c for c in truth.columns if c.startswith("_")])
        sky_pos = wsci.pixel_to_world(truth["x"].values, truth["y"].values)
        truth.insert(0, "transient_id", [f"{region}-T{i:03d}" for i in range(len(truth))])
        truth["ra"] = sky_pos.ra.deg
        truth["dec"] = sky_pos.dec.deg
        truth["sign"] = np.sign(truth["delta_flux"]).astype(int)
        truth["mag"] = cfg.zeropoint - 2.5 * np.log10(np.abs(truth["delta_flux"]))
        truth["mjd"] = np.where(truth["epoch"] == "science", cfg.science_mjd, cfg.reference_mjd)
    else:
        truth = pd.DataFrame(columns=["transient_id", "type", "x", "y", "delta_flux", "host_x", "host_y",
                                      "trail_length_px", "epoch", "expected_snr", "ra", "dec", "sign", "mag", "mjd"])
    truth.insert(1, "region", region)

    def header(w, epoch, exptime, mjd, fwhm, gain, rn, sky_level, ncomb):
        h = fits.Header()
        h.update(w.to_header())
        h["TELESCOP"] = ("AstrID-Sim", "simulated survey")
        h["INSTRUME"] = ("SimCam", "simulated camera")
        h["OBJECT"] = region
        h["FILTER"] = cfg.filter_name
        h["EPOCH_T"] = (epoch, "science or reference")
        h["EXPTIME"] = (exptime, "[s] exposure time")
        h["MJD-OBS"] = (mjd, "MJD at start of exposure")
        from astropy.time import Time

        h["DATE-OBS"] = Time(mjd, format="mjd").isot
        h["GAIN"] = (gain, "[e-/ADU]")
        h["RDNOISE"] = (rn, "[e-] read noise")
        h["SATURATE"] = (cfg.saturation, "[ADU] saturation level")
        h["MAGZP"] = (cfg.zeropoint + 2.5 * np.log10(exptime / cfg.exptime_science), "mag of 1 ADU")
        h["SKYLEVEL"] = (sky_level, "[ADU] mean simulated sky")
        h["SIMFWHM"] = (round(fwhm, 4), "[pix] true PSF FWHM (simulation)")
        h["FWHM"] = (round(fwhm, 1), "[pix] seeing FWHM as the telescope reports it")
        h["SIMBETA"] = (cfg.moffat_beta, "true Moffat beta (simulation)")
        h["SIMSEED"] = (seed, "simulation seed (region-specific)")
        h["NCOMBINE"] = (ncomb, "exposures combined")
        h["BUNIT"] = "adu"
        return h

    def hdul(img, mask, hdr):
        mh = fits.Header()
        mh["BITS"] = (f"{MASK_BAD_COLUMN}=bad column, {MASK_SATURATED}=saturated", "mask bit meanings")
        return fits.HDUList([fits.PrimaryHDU(img.astype(np.float32), hdr), fits.ImageHDU(mask, mh, name="MASK")])

    hs = header(wsci, "science", cfg.exptime_science, cfg.science_mjd, fwhm_s, cfg.gain, cfg.read_noise, cfg.sky_science, 1)
    hr = header(wref, "reference", cfg.exptime_reference, cfg.reference_mjd, fwhm_r, gain_r, rn_r, sky_r, cfg.reference_ncombine)
    meta = dict(region=region, ra=ra, dec=dec, seed=seed, fwhm_science=fwhm_s, fwhm_reference=fwhm_r,
                offset_px=float(off), rotation_deg=rot, flux_scale_reference=fs, sigma_science=float(sig_n),
                sigma_reference=float(sig_r), n_stars=int(len(sky.star_flux)), n_galaxies=int(len(sky.gal_flux)),
                n_cosmic_rays=int(len(crs)), n_transients=int(len(truth)), config=asdict(cfg))
    return SimulatedPair(science=hdul(sci, mask_s, hs), reference=hdul(ref, mask_r, hr), truth=truth,
                         cosmic_rays=crs, meta=meta)
