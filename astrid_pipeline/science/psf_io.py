"""User-supplied PSF files (e.g. WebbPSF/STPSF stamps) resampled onto an image's pixels.

A PSF file is a FITS image of the PSF. Its sampling is read from its header:
``PIXELSCL`` (arcsec per PSF pixel, as WebbPSF/STPSF and poppy write it) is
compared with the image's pixel scale from its WCS; without it, ``OVERSAMP``
(PSF pixels per detector pixel of that extension; WebbPSF's ``DET_SAMP``
extension carries ``OVERSAMP = 1``) or ``DET_SAMP`` says how much finer than
the image's pixels it is sampled; with neither, the PSF is taken to be on the
image's pixels and a warning says so. Of a WebbPSF file the extension used is
the first present of ``OVERDIST``, ``OVERSAMP``, ``DET_DIST``, ``DET_SAMP``
(oversampled first: resampling it loses nothing), else the first image HDU.

The PSF's axes are taken to be the pixel axes of ``source_wcs`` (the image the
PSF was made for; by default the image it is used on). When it is used on
another grid (the reference resampled onto the science grid) the local
Jacobian between the two WCSs maps it, rotation and scale included.
Resampling integrates the PSF over the target pixels by sub-sampling (odd
``oversampling`` per pixel side, at least one sample per PSF pixel) of a
cubic-spline interpolation of the PSF's surface brightness; the result is
centred on the light centroid of the core and normalised to unit sum.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from astrid_pipeline.errors import BadHeaderError, BadShapeError, EmptyDataError, InputFileError

log = logging.getLogger(__name__)

#: WebbPSF/STPSF extensions, in the order they are preferred.
PSF_EXTENSIONS = ("OVERDIST", "OVERSAMP", "DET_DIST", "DET_SAMP")


def user_psf_path(raw_image: str | os.PathLike, epoch: str) -> Path:
    """Where acquisition puts the user's PSF file for an epoch: ``<epoch>_psf.fits`` beside the raw image."""
    return Path(raw_image).with_name(f"{epoch}_psf.fits")


@dataclass
class PSFFile:
    data: np.ndarray  # 2-D, float64, finite
    pixel_scale: float | None  # arcsec per PSF pixel (PIXELSCL)
    oversampling: float | None  # PSF pixels per image pixel (OVERSAMP / DET_SAMP)
    path: str
    hdu: str


def read_psf_file(path: str | os.PathLike, hdu: int | str | None = None) -> PSFFile:
    """Read a PSF image and its sampling keywords; named errors for unusable files."""
    from astrid_pipeline.io.fits_io import open_fits

    hdul = open_fits(path)
    try:
        if hdu is not None:
            try:
                h = hdul[hdu]
            except (KeyError, IndexError) as exc:
                raise InputFileError(path, f"PSF file has no HDU {hdu!r}") from exc
        else:
            names = [x.name for x in hdul]
            pick = next((n for n in PSF_EXTENSIONS if n in names and hdul[n].data is not None), None)
            h = hdul[pick] if pick else next((x for x in hdul if x.is_image and x.data is not None), None)
            if h is None:
                raise BadShapeError(path, "PSF file holds no image")
        data = np.asarray(h.data, dtype=np.float64)
        hdr = h.header.copy()
        for card in hdul[0].header.cards:  # keywords of the primary header are inherited
            if card.keyword in ("PIXELSCL", "OVERSAMP", "DET_SAMP") and card.keyword not in hdr:
                hdr[card.keyword] = card.value
        name = h.name or str(hdu)
    finally:
        hdul.close()
    if data.ndim == 3 and data.shape[0] == 1:
        data = data[0]
    if data.ndim != 2:
        raise BadShapeError(path, f"PSF image has shape {data.shape}; a 2-D PSF stamp is needed "
                                  "(a cube of PSFs: give one plane)")
    if min(data.shape) < 3:
        raise BadShapeError(path, f"PSF image {data.shape} is too small")
    if not np.isfinite(data).all():
        raise EmptyDataError(path, "PSF image has NaN or infinite pixels")
    if not data.sum() > 0:
        raise EmptyDataError(path, "PSF image has no positive flux")

    def number(key):
        if key not in hdr:
            return None
        try:
            v = float(hdr[key])
        except (TypeError, ValueError) as exc:
            raise BadHeaderError(path, f"PSF keyword {key}={hdr[key]!r} is not a number") from exc
        if not (np.isfinite(v) and v > 0):
            raise BadHeaderError(path, f"PSF keyword {key}={v} must be positive")
        return v

    scale = number("PIXELSCL")
    over = number("OVERSAMP")
    if over is None:
        over = number("DET_SAMP")
    return PSFFile(data, scale, over, os.fspath(path), name)


def pixel_scale_arcsec(wcs) -> float:
    """Geometric-mean pixel scale (arcsec per pixel) of a celestial WCS at its reference point."""
    from astropy.wcs.utils import proj_plane_pixel_scales

    return float(np.sqrt(np.prod(proj_plane_pixel_scales(wcs.celestial)))) * 3600.0


def local_jacobian(target_wcs, source_wcs, at=None) -> np.ndarray:
    """d(source pixel)/d(target pixel) (2x2, rows = (x, y)) at a target pixel (default: the grid centre)."""
    if source_wcs is None or source_wcs is target_wcs:
        return np.eye(2)
    if at is None:
        nx, ny = target_wcs.pixel_shape or (2, 2)
        at = ((nx - 1) / 2.0, (ny - 1) / 2.0)
    x0, y0 = at
    px = np.array([x0, x0 + 1.0, x0])
    py = np.array([y0, y0, y0 + 1.0])
    sky = target_wcs.celestial.pixel_to_world(px, py)
    sx, sy = source_wcs.celestial.world_to_pixel(sky)
    return np.array([[sx[1] - sx[0], sx[2] - sx[0]], [sy[1] - sy[0], sy[2] - sy[0]]])


def resample_psf(psf: PSFFile, target_wcs=None, source_wcs=None, size: int | None = None,
                 oversampling: int = 5, max_size: int = 63):
    """The PSF on the target's pixel axes: (oversampled array, oversampling k, stamp size, notes).

    The returned array samples the PSF's surface brightness ``k`` times finer
    than the target pixels (odd k, sample (i, j) of the central k x k block
    at the stamp centre); summing k x k blocks integrates it over pixels.
    """
    from scipy import ndimage

    src = source_wcs if source_wcs is not None else target_wcs
    s, notes = _sampling(psf, src)  # PSF pixels per source-image pixel
    J = local_jacobian(target_wcs, source_wcs) if target_wcs is not None else np.eye(2)
    M = s * J  # PSF pixels per target pixel
    stretch = float(np.linalg.svd(M, compute_uv=False).max())
    k = max(int(oversampling), int(np.ceil(stretch)))
    k += 1 - k % 2
    data = psf.data / psf.data.sum()
    ny, nx = data.shape
    cx, cy = _core_centroid(data)  # the PSF's centre, in PSF pixels
    if size is None:
        extent = min(nx, ny) / max(stretch, 1e-9)  # PSF image side in target pixels
        size = int(min(np.floor(extent), max_size))
    size = max(3, int(size) - (1 - int(size) % 2))
    n = size * k
    u = (np.arange(n) - (n - 1) / 2.0) / k  # target-pixel offsets of the sub-samples
    ux, uy = np.meshgrid(u, u)
    px = cx + M[0, 0] * ux + M[0, 1] * uy
    py = cy + M[1, 0] * ux + M[1, 1] * uy
    sb = ndimage.map_coordinates(data, [py, px], order=3, mode="constant", cval=0.0)
    sb = np.clip(sb, 0, None)
    total = sb.sum()
    if not total > 0:
        raise EmptyDataError(psf.path, "PSF has no flux inside the stamp after resampling")
    return sb / total, k, size, notes


def user_psf(path: str | os.PathLike, target_wcs=None, source_wcs=None, size: int | None = None,
             hdu: int | str | None = None, max_size: int = 63):
    """A :class:`~astrid_pipeline.science.psf.PSFModel` (method ``user``) from a PSF file, on the target pixels.

    A PSF already sampled on the target's pixels (same scale and axes) is only
    recentred: integrating it over pixels again would broaden it by a pixel.
    Its FWHM is then that of a pixel-integrated Moffat fitted to it; for an
    oversampled PSF it is the model-free half-maximum width of the resampled
    profile (:func:`~astrid_pipeline.science.psf.half_max_fwhm`).
    """
    from astrid_pipeline.science.psf import PSFModel, fit_pixel_moffat, half_max_fwhm, moments_shape

    f = read_psf_file(path, hdu)
    src = source_wcs if source_wcs is not None else target_wcs
    s, notes = _sampling(f, src)
    if not 0.05 <= s <= 50:
        raise BadHeaderError(f.path, f"PSF sampling of {s:.3g} PSF pixels per image pixel is implausible "
                                     "(PIXELSCL is in arcsec per PSF pixel; OVERSAMP is PSF pixels per image pixel)")
    J = local_jacobian(target_wcs, source_wcs) if target_wcs is not None else np.eye(2)
    if np.allclose(s * J, np.eye(2), atol=0.02):
        stamp = _recentred(f.data, size, max_size)
        fwhm, beta, _, _ = fit_pixel_moffat(stamp)
        ell, theta = moments_shape(stamp)
        over, k = None, 1
    else:
        if s < 3:
            notes.append(f"PSF file is sampled only {s:.2f}x finer than the image: integrating it over the "
                         f"image's pixels broadens it by about {1 / (12 * s * s):.3f} px^2 in variance")
        over, k, size, more = resample_psf(f, target_wcs, source_wcs, size, max_size=max_size)
        notes += more
        n = over.shape[0] // k
        stamp = over.reshape(n, k, n, k).sum(axis=(1, 3))
        stamp /= stamp.sum()
        fwhm = half_max_fwhm(over, k)
        beta = _profile_beta(over, k, fwhm)
        ell, theta = moments_shape(stamp)
        over = over.astype(np.float32)
    warning = "; ".join(dict.fromkeys(notes))
    if warning:
        log.warning("%s: %s", f.path, warning)
    return PSFModel(stamp.astype(np.float32), fwhm, beta, 0, ell, "user", theta, warning=warning,
                    source=Path(f.path).name, oversampled=over, oversampling=k)


def _sampling(psf: PSFFile, source_wcs) -> tuple[float, list[str]]:
    """PSF pixels per source-image pixel, from PIXELSCL (preferred) or OVERSAMP/DET_SAMP."""
    notes: list[str] = []
    if psf.pixel_scale is not None and source_wcs is not None:
        s = pixel_scale_arcsec(source_wcs) / psf.pixel_scale
        if psf.oversampling is not None and abs(s / psf.oversampling - 1) > 0.1:
            notes.append(f"PSF file PIXELSCL={psf.pixel_scale:g} arcsec gives {s:.3f} PSF pixels per image "
                         f"pixel, not OVERSAMP={psf.oversampling:g}: the pixel scales are used")
        return s, notes
    if psf.oversampling is not None:
        return float(psf.oversampling), notes
    notes.append("PSF file has no PIXELSCL/OVERSAMP/DET_SAMP keyword: taken to be sampled on the image's pixels")
    return 1.0, notes


def _core_centroid(data: np.ndarray) -> tuple[float, float]:
    """Centre (x, y) of the PSF core: a Gaussian-windowed centroid (as SExtractor's XWIN_IMAGE), iterated.

    The window's sigma is the core's half-maximum radius; the window moves
    with the estimate, so the result is unbiased for a symmetric core
    whatever its sub-pixel position.
    """
    ny, nx = data.shape
    iy, ix = np.unravel_index(int(np.argmax(data)), data.shape)
    sigma = max(0.5, np.sqrt((data >= 0.5 * data.max()).sum() / np.pi) / 1.1774)
    yy, xx = np.mgrid[0:ny, 0:nx]
    cx, cy = float(ix), float(iy)
    w0 = np.clip(data, 0, None)
    for _ in range(30):
        w = w0 * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * sigma**2))
        nx_, ny_ = float((w * xx).sum() / w.sum()), float((w * yy).sum() / w.sum())
        # a windowed centroid converges to the centre when stepped by twice the offset (Bertin's XWIN scheme)
        nx_, ny_ = cx + 2 * (nx_ - cx), cy + 2 * (ny_ - cy)
        done = abs(nx_ - cx) < 1e-4 and abs(ny_ - cy) < 1e-4
        cx, cy = nx_, ny_
        if done:
            break
    return cx, cy


def _recentred(data: np.ndarray, size: int | None, max_size: int) -> np.ndarray:
    """A PSF on the image's own pixels: shifted so its core centroid is the central pixel's centre, unit sum."""
    from scipy import ndimage

    cx, cy = _core_centroid(data)
    ix, iy = int(round(cx)), int(round(cy))
    fx, fy = cx - ix, cy - iy
    d = data if max(abs(fx), abs(fy)) < 0.01 else ndimage.shift(data, (-fy, -fx), order=3, mode="constant")
    ny, nx = d.shape
    if size is None:
        size = min(2 * min(ix, nx - 1 - ix, iy, ny - 1 - iy) + 1, max_size)
    size = max(3, int(size) - (1 - int(size) % 2))
    half = size // 2
    out = np.zeros((size, size))
    y0, y1 = max(iy - half, 0), min(iy + half + 1, ny)
    x0, x1 = max(ix - half, 0), min(ix + half + 1, nx)
    out[y0 - (iy - half) : y1 - (iy - half), x0 - (ix - half) : x1 - (ix - half)] = d[y0:y1, x0:x1]
    out = np.clip(out, 0, None)
    return out / out.sum()


def _profile_beta(over: np.ndarray, k: int, fwhm: float) -> float:
    """Moffat beta of the azimuthal profile of a well-sampled PSF of known FWHM (informative only)."""
    from scipy.optimize import least_squares

    n = over.shape[0]
    c = (n - 1) / 2.0
    yy, xx = np.mgrid[0:n, 0:n]
    r = np.hypot(xx - c, yy - c).ravel() / k
    v = over.ravel() / over.max()
    sel = r < 4 * fwhm

    def res(p):
        a = fwhm / (2.0 * np.sqrt(2.0 ** (1.0 / p[0]) - 1.0))
        return (1.0 + (r[sel] / a) ** 2) ** (-p[0]) - v[sel]

    try:
        return float(least_squares(res, [3.0], bounds=([1.01], [50.0])).x[0])
    except ValueError:
        return float("nan")
