"""Simulated cosmic-ray hits on realistic sky images, for training and testing 2-D CR detectors.

A field (:func:`simulate_field`) is a sky of Moffat stars (power-law counts,
some bright enough to saturate, with bleed trails along columns) and Sersic
galaxies seen through a PSF whose FWHM ranges from undersampled (1.6 px)
to broad, on a sky level that is augmented as in deepCR (Zhang & Bloom 2020;
Bhavanam et al. 2022, sec. 2.3: the sky is scaled by up to 3x or reduced by
up to 0.9 of its level), with Poisson and read noise. Cosmic rays
(:func:`add_cosmic_rays`) come in three shapes:

- **spots**: one pixel with charge shared to its neighbours;
- **tracks**: straight segments deposited along their length with a
  fluctuating (Landau-like, log-normal) charge;
- **worms**: curved random-walk paths, as low-energy electrons make;

each then spread by charge diffusion (a small Gaussian). Amplitudes are
drawn per hit as the peak pixel in units of the local noise: a share of
faint hits at 3-8 sigma, the rest log-uniform up to thousands of sigma.
The truth mask marks the pixels whose CR signal exceeds ``truth_nsigma``
times the local noise. Optional real dark frames give real hit shapes
(:func:`hits_from_dark`: the paper's 3-sigma threshold and 3x3 dilation).

Everything flows from ``numpy.random.Generator`` objects, so the same seed
gives the same images.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from astrid_pipeline.errors import ConfigError

CR_KINDS = ("spot", "track", "worm")


@dataclass
class CRSimConfig:
    """Parameters of the simulated CR training set (all ranges are drawn uniformly per image)."""

    image_size: int = field(default=256, metadata={"description": "side of each simulated field (px)"})
    patch: int = field(default=64, metadata={"description": "training patch side (px)"})
    n_train: int = field(default=24, metadata={"description": "training fields (each gives (image_size/patch)^2 patches)"})
    n_val: int = field(default=4, metadata={"description": "validation fields"})
    n_test: int = field(default=4, metadata={"description": "test fields (from test_seed)"})
    seed: int = field(default=1, metadata={"description": "seed of the train and validation fields"})
    test_seed: int = field(default=9_000_001, metadata={"description": "the test split comes from a seed the training never sees"})
    gain: tuple[float, float] = field(default=(0.8, 3.0), metadata={"description": "gain range (e-/ADU)"})
    read_noise_e: tuple[float, float] = field(default=(3.0, 12.0), metadata={"description": "read noise range (e-)"})
    sky_e: tuple[float, float] = field(default=(30.0, 2000.0), metadata={"description": "sky per pixel before augmentation"})
    sky_augment: tuple[float, float] = field(default=(0.1, 3.0), metadata={"description": "deepCR: scale by up to 3x, subtract up to 0.9x"})
    fwhm: tuple[float, float] = field(default=(1.6, 5.0), metadata={"description": "px; the low end is undersampled (Nyquist: 2 px)"})
    saturation_e: float = field(default=60000.0, metadata={"description": "full well (e-): pixels above it saturate"})
    star_density: float = field(default=4000.0, metadata={"description": "per 10^6 px"})
    star_flux_e: tuple[float, float] = field(default=(200.0, 5e6), metadata={"description": "the bright end saturates"})
    galaxy_density: float = field(default=1000.0, metadata={"description": "galaxies per 10^6 px"})
    cr_density: float = field(default=1200.0, metadata={"description": "hits per 10^6 px"})
    kind_fractions: tuple[float, float, float] = field(default=(0.4, 0.35, 0.25), metadata={"description": "spot, track, worm"})
    faint_fraction: float = field(default=0.35, metadata={"description": "share of hits at 3-8 sigma"})
    faint_nsigma: tuple[float, float] = field(default=(3.0, 8.0), metadata={"description": "peak range of faint hits, in the frame's own noise sigma"})
    bright_nsigma: tuple[float, float] = field(default=(8.0, 5000.0), metadata={"description": "peak range of bright hits, in noise sigma"})
    diffusion_sigma: tuple[float, float] = field(default=(0.1, 0.45), metadata={"description": "px, charge spreading"})
    truth_nsigma: float = field(default=1.0, metadata={"description": "a pixel belongs to a hit's truth mask above this many sigma of added charge"})
    spectral_fraction: float = field(default=0.25, metadata={"description": "share of fields that also carry long-slit sky lines and a trace"})
    dark_frames: tuple[str, ...] = field(default=(), metadata={"description": "optional FITS dark frames with real hits"})

    def validate(self) -> "CRSimConfig":
        if self.image_size < 16 or self.patch < 8 or self.patch > self.image_size:
            raise ConfigError(f"image_size {self.image_size} and patch {self.patch}: need 8 <= patch <= image_size, image_size >= 16")
        if self.n_train < 1 or self.n_val < 1 or self.n_test < 1:
            raise ConfigError("n_train, n_val and n_test must each be at least 1")
        if self.seed == self.test_seed:
            raise ConfigError("test_seed must differ from seed: the test split must be unseen")
        if abs(sum(self.kind_fractions) - 1.0) > 1e-6 or min(self.kind_fractions) < 0:
            raise ConfigError(f"kind_fractions {self.kind_fractions} must be >= 0 and sum to 1")
        if not 0.0 <= self.faint_fraction <= 1.0:
            raise ConfigError("faint_fraction must be in [0, 1]")
        for name in ("gain", "read_noise_e", "sky_e", "fwhm", "sky_augment"):
            lo, hi = getattr(self, name)
            if not (0 < lo <= hi):
                raise ConfigError(f"{name} range {lo, hi} must satisfy 0 < low <= high")
        return self

    def as_dict(self) -> dict:
        d = asdict(self)
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in d.items()}


@dataclass
class SimulatedField:
    """One simulated exposure: ADU image with CRs, its truth, and what a detector needs to know."""

    image: np.ndarray  # ADU, float32, saturated pixels clipped at ``saturation``
    cr_mask: np.ndarray  # bool truth
    clean: np.ndarray  # ADU, the same exposure without cosmic rays (noise included)
    model: np.ndarray  # ADU, noise-free sky + sources (the "median" a stack would give)
    sky: float  # ADU
    gain: float
    read_noise: float  # ADU
    saturation: float  # ADU
    fwhm: float
    saturated: np.ndarray  # bool
    hits: list = field(default_factory=list)


# --------------------------------------------------------------------------- cosmic rays
def _deposit(acc: np.ndarray, xs: np.ndarray, ys: np.ndarray, w: np.ndarray) -> None:
    """Bilinear deposit of weights at sub-pixel positions (anti-aliased paths)."""
    ny, nx = acc.shape
    x0 = np.floor(xs).astype(int)
    y0 = np.floor(ys).astype(int)
    fx, fy = xs - x0, ys - y0
    for dx, dy, ww in ((0, 0, (1 - fx) * (1 - fy)), (1, 0, fx * (1 - fy)), (0, 1, (1 - fx) * fy), (1, 1, fx * fy)):
        xx, yy = x0 + dx, y0 + dy
        ok = (xx >= 0) & (xx < nx) & (yy >= 0) & (yy < ny)
        np.add.at(acc, (yy[ok], xx[ok]), (w * ww)[ok])


def _hit_shape(rng: np.random.Generator, kind: str, size: int) -> tuple[np.ndarray, float]:
    """A unit-peak hit stamp of side ``size`` centred in the stamp; returns (stamp, length_px)."""
    stamp = np.zeros((size, size))
    c = size / 2.0
    if kind == "spot":
        cx = cy = size // 2
        share = rng.dirichlet(np.ones(8) * 0.5) * rng.uniform(0.0, 0.5)
        stamp[cy, cx] = 1.0 - share.sum()
        nb = [(-1, 0), (1, 0), (0, -1), (0, 1), (-1, -1), (1, 1), (-1, 1), (1, -1)]
        for (dy, dx), s in zip(nb, share * np.r_[np.ones(4), np.full(4, 0.3)]):
            stamp[cy + dy, cx + dx] += s
        length = 1.0
    else:
        if kind == "track":
            length = float(np.exp(rng.uniform(np.log(2.0), np.log(min(40.0, size / 2 - 3)))))
            ang = rng.uniform(0, np.pi)
            t = np.arange(0.0, length, 0.25)
            xs = c + (t - length / 2) * np.cos(ang)
            ys = c + (t - length / 2) * np.sin(ang)
        else:  # worm: a random walk with smoothly changing direction
            length = float(rng.uniform(4.0, min(25.0, size / 2 - 3)))
            n = int(length / 0.25)
            turn = np.cumsum(rng.normal(0, 0.12, n)) + rng.uniform(0, 2 * np.pi)
            xs = np.cumsum(0.25 * np.cos(turn))
            ys = np.cumsum(0.25 * np.sin(turn))
            xs = xs - xs.mean() + c
            ys = ys - ys.mean() + c
        w = rng.lognormal(0.0, 0.5, xs.size)  # Landau-like fluctuation of deposited charge
        keep = (xs > 1) & (xs < size - 2) & (ys > 1) & (ys < size - 2)
        _deposit(stamp, xs[keep], ys[keep], w[keep])
    return stamp, length


def add_cosmic_rays(
    rng: np.random.Generator,
    shape: tuple[int, int],
    noise_sigma: np.ndarray | float,
    *,
    density: float = 1200.0,
    kind_fractions=(0.4, 0.35, 0.25),
    faint_fraction: float = 0.35,
    faint_nsigma=(3.0, 8.0),
    bright_nsigma=(8.0, 5000.0),
    diffusion_sigma=(0.1, 0.45),
    truth_nsigma: float = 1.0,
    n_hits: int | None = None,
) -> tuple[np.ndarray, np.ndarray, list[dict]]:
    """Cosmic-ray signal (same units as ``noise_sigma``), its truth mask and a list of hits.

    ``noise_sigma`` is the per-pixel noise (scalar or map): each hit's peak
    pixel is drawn in units of it. Returns ``(signal, mask, hits)``.
    """
    from scipy import ndimage

    ny, nx = shape
    sig = np.broadcast_to(np.asarray(noise_sigma, dtype=float), shape)
    n = int(rng.poisson(density * nx * ny / 1e6)) if n_hits is None else int(n_hits)
    signal = np.zeros(shape)
    mask = np.zeros(shape, bool)
    hits = []
    size = 2 * int(min(48, max(8, min(ny, nx) // 2)) // 2) + 1
    h = size // 2
    for k in range(n):
        kind = CR_KINDS[int(rng.choice(3, p=np.asarray(kind_fractions) / np.sum(kind_fractions)))]
        stamp, length = _hit_shape(rng, kind, size)
        s = float(rng.uniform(*diffusion_sigma))
        stamp = ndimage.gaussian_filter(stamp, s, mode="constant", truncate=3.0)
        peak = stamp.max()
        if peak <= 0:
            continue
        stamp /= peak
        faint = rng.random() < faint_fraction
        lo, hi = faint_nsigma if faint else bright_nsigma
        amp_sigma = float(rng.uniform(lo, hi)) if faint else float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
        cx, cy = int(rng.integers(0, nx)), int(rng.integers(0, ny))
        x0, y0 = cx - h, cy - h
        sx0, sy0 = max(0, -x0), max(0, -y0)
        sx1, sy1 = size - max(0, x0 + size - nx), size - max(0, y0 + size - ny)
        if sx0 >= sx1 or sy0 >= sy1:
            continue
        win = (slice(y0 + sy0, y0 + sy1), slice(x0 + sx0, x0 + sx1))
        local = float(sig[cy, cx])
        part = stamp[sy0:sy1, sx0:sx1] * amp_sigma * local
        signal[win] += part
        mask[win] |= part > truth_nsigma * sig[win]
        hits.append(dict(cr_id=k, kind=kind, x=float(cx), y=float(cy), length_px=float(length),
                         peak_nsigma=amp_sigma, faint=bool(faint), npix=int((part > truth_nsigma * sig[win]).sum())))
    return signal, mask, hits


def hits_from_dark(dark: np.ndarray, image_sigma: float, alpha: float = 1.0, nsigma: float = 3.0):
    """Real hit shapes from a dark frame (Bhavanam et al. 2022, sec. 2.1).

    Pixels more than ``nsigma`` robust sigma above the median are CR pixels;
    the mask is dilated 3x3; the CR signal, rescaled by
    ``alpha * image_sigma / sigma_dark``, is returned with the mask.
    """
    from scipy import ndimage

    d = np.asarray(dark, dtype=float)
    if d.ndim != 2:
        raise ConfigError(f"dark frame must be 2-D, got {d.ndim}-D")
    good = np.isfinite(d)
    med = float(np.median(d[good]))
    sd = 1.4826 * float(np.median(np.abs(d[good] - med)))
    if not sd > 0:
        raise ConfigError("dark frame has no measurable noise")
    m = good & (d > med + nsigma * sd)
    m = ndimage.binary_dilation(m, np.ones((3, 3), bool))
    signal = np.where(m & good, (d - med) * alpha * image_sigma / sd, 0.0)
    return np.clip(signal, 0, None), m


# --------------------------------------------------------------------------- fields
def _bleed(model: np.ndarray, saturation: float) -> np.ndarray:
    """Saturated charge spills along columns (bleed trails), conserving the excess."""
    from scipy import ndimage

    over = model > saturation
    if not over.any():
        return model
    out = np.minimum(model, saturation)
    labels, n = ndimage.label(over)
    for sl_idx, sl in enumerate(ndimage.find_objects(labels), start=1):
        ys, xs = sl
        for x in range(xs.start, xs.stop):
            col = (labels[ys, x] == sl_idx)
            if not col.any():
                continue
            excess = float(np.sum(model[ys, x][col] - saturation))
            extra = int(excess / saturation / 2)
            rows = np.nonzero(col)[0] + ys.start
            y0, y1 = max(0, rows.min() - extra), min(model.shape[0], rows.max() + extra + 1)
            out[y0:y1, x] = saturation
    return out


def simulate_field(rng: np.random.Generator, cfg: CRSimConfig, dark: np.ndarray | None = None) -> SimulatedField:
    """One exposure of a random field with cosmic rays (see the module docstring)."""
    from scipy.signal import fftconvolve

    from astrid_pipeline.science.psf import moffat_stamp
    from astrid_pipeline.science.skysim import _add_stamp, _power_law, _render_points, _sersic_stamp

    n = cfg.image_size
    shape = (n, n)
    gain = float(rng.uniform(*cfg.gain))
    rn_e = float(rng.uniform(*cfg.read_noise_e))
    sky_e = float(np.exp(rng.uniform(*np.log(cfg.sky_e)))) * float(rng.uniform(*cfg.sky_augment))
    fwhm = float(rng.uniform(*cfg.fwhm))
    beta = float(rng.uniform(2.5, 4.5))
    model = np.zeros(shape)
    area = n * n / 1e6
    ns = rng.poisson(cfg.star_density * area)
    sx, sy = rng.uniform(-10, n + 10, ns), rng.uniform(-10, n + 10, ns)
    sf = _power_law(rng, ns, cfg.star_flux_e[0], cfg.star_flux_e[1], 0.6)
    # always at least one saturated star, so every field teaches "bright star is not a CR"
    if ns:
        sf[0] = cfg.saturation_e * fwhm**2 * rng.uniform(3, 30)
    _render_points(model, sx, sy, sf, fwhm, beta)
    ng = rng.poisson(cfg.galaxy_density * area)
    psf = moffat_stamp(fwhm, 31, beta)
    for _ in range(ng):
        flux = float(_power_law(rng, 1, 500.0, 2e5, 0.9)[0])
        re = float(np.clip(1.0 * (flux / 500.0) ** 0.25 * rng.lognormal(0, 0.3), 0.8, 8.0))
        size = int(min(2 * np.ceil(6 * re) + 1, 61))
        gx, gy = rng.uniform(0, n), rng.uniform(0, n)
        st = _sersic_stamp(re, 1.0 if rng.random() < 0.7 else 4.0, rng.uniform(0.4, 1.0), rng.uniform(0, np.pi),
                           gx - round(gx), gy - round(gy), size)
        _add_stamp(model, fftconvolve(st, psf, mode="full") * flux, gx, gy)
    yy, xx = np.mgrid[0:n, 0:n]
    if rng.random() < cfg.spectral_fraction:
        # long-slit look: sky lines across the slit and a dispersed trace, PSF-broadened (not CRs)
        sg = fwhm / 2.3548
        along = xx if rng.random() < 0.5 else yy
        across = yy if along is xx else xx
        for _ in range(int(rng.integers(3, 15))):
            c0 = rng.uniform(0, n)
            amp = float(np.exp(rng.uniform(np.log(20.0), np.log(5e4))))
            model += amp * np.exp(-0.5 * ((along - c0) / sg) ** 2)
        t0 = rng.uniform(0.2 * n, 0.8 * n) + rng.uniform(-0.03, 0.03) * (along - n / 2)
        model += float(np.exp(rng.uniform(np.log(100.0), np.log(3e4)))) * np.exp(-0.5 * ((across - t0) / sg) ** 2)
    grad = rng.uniform(-0.1, 0.1)
    sky_map = sky_e * (1 + grad * (xx / n - 0.5))
    electrons = rng.poisson(np.clip(model + sky_map, 0, None)).astype(float) + rng.normal(0, rn_e, shape)
    sigma_e = np.sqrt(np.clip(model + sky_map, 0, None) + rn_e**2)
    signal, mask, hits = add_cosmic_rays(
        rng, shape, sigma_e, density=cfg.cr_density, kind_fractions=cfg.kind_fractions,
        faint_fraction=cfg.faint_fraction, faint_nsigma=cfg.faint_nsigma, bright_nsigma=cfg.bright_nsigma,
        diffusion_sigma=cfg.diffusion_sigma, truth_nsigma=cfg.truth_nsigma)
    if dark is not None:
        dsig, dmask = hits_from_dark(dark[:n, :n], float(np.median(sigma_e)))
        pad = [(0, n - dsig.shape[0]), (0, n - dsig.shape[1])]
        signal += np.pad(dsig, pad)
        mask |= np.pad(dmask, pad)
    clean = _bleed(electrons, cfg.saturation_e)
    with_cr = _bleed(electrons + signal, cfg.saturation_e)
    saturated = with_cr >= cfg.saturation_e
    # a CR landing on a saturated pixel is invisible: not a CR pixel to find
    mask &= ~(clean >= cfg.saturation_e)
    return SimulatedField(
        image=(with_cr / gain).astype(np.float32), cr_mask=mask, clean=(clean / gain).astype(np.float32),
        model=((model + sky_map) / gain).astype(np.float32), sky=sky_e / gain, gain=gain, read_noise=rn_e / gain,
        saturation=cfg.saturation_e / gain, fwhm=fwhm, saturated=saturated, hits=hits)


def median_weight_map(model: np.ndarray, sky: float, noise: float, alpha: float = 0.1,
                      clip=(1.0, 5.0)) -> np.ndarray:
    """Cosmic-CoNN's median-weighted mask from a CR-free (median) image (Xu et al. 2021).

    Sky-subtract, clip to ``clip`` sigma, smooth with a 5x5 Gaussian (sigma 2),
    scale to [0, 1] and clamp below at ``alpha``: source pixels weigh more,
    so the network pays for false positives on stars.
    """
    from scipy import ndimage

    z = (np.asarray(model, float) - sky) / max(noise, 1e-12)
    z = np.clip(z, clip[0], clip[1]) - clip[0]
    z = ndimage.gaussian_filter(z, 2.0, truncate=1.0)  # radius 2: a 5x5 kernel
    top = z.max()
    z = z / top if top > 0 else z
    return np.clip(z, alpha, 1.0).astype(np.float32)


