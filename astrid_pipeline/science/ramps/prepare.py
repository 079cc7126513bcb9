"""One integration of a ramp made ready for detection: the step every detector shares.

:class:`RampPrep` serves reference-corrected row blocks (groups x rows x
cols, float32) with their saturation flags, and measures the noise the
detectors threshold against, from the data:

- the gain from the config, else the file, else 1 (with a warning, and
  ``gain_source = "assumed"``);
- the white read noise per readout output, from second differences of the
  reads on clean pixels of strips spread over the frame (robust to jumps,
  RTN and large events), unless the config gives one;
- the measured scatter of the GLS jump statistic on those clean pixels
  (``z_scale_out``; 1 when the noise is white in time and the gain right),
  by which jump thresholds are scaled.

The rule-based detectors (:func:`astrid_pipeline.science.ramps.detect.detect_ramp`)
and the 3D U-Net (:mod:`astrid_pipeline.ml.ramps`) read ramps through it, so
both see the same corrected data and noise.
"""

from __future__ import annotations

import logging

import numpy as np

from astrid_pipeline.science.ramps.errors import NonFiniteRampError
from astrid_pipeline.science.ramps.jumps import estimate_read_noise, gls_scale, trimmed_center
from astrid_pipeline.science.ramps.readers import RampSource
from astrid_pipeline.science.ramps.refpix import ReferenceCorrector, output_geometry, science_mask

log = logging.getLogger(__name__)

#: bounds of the measured scatter of the GLS statistic used to scale the jump threshold
Z_SCALE_RANGE = (1.0, 3.0)  # never below the nominal threshold


def noise_strips(ny: int, n_strips: int = 6, height: int = 8) -> list[tuple[int, int]]:
    """Row strips the read noise is measured on: ``n_strips`` of ``height`` rows spread evenly over the frame."""
    if ny <= n_strips * height:
        return [(0, ny)]
    starts = np.linspace(0, ny - height, n_strips).round().astype(int)
    return [(int(a), int(a) + height) for a in starts]


def clean_pixels(cube: np.ndarray, read_noise_col: np.ndarray, gain: float, nsigma: float = 4.5) -> np.ndarray:
    """Pixels of ``cube`` (groups, rows, cols) none of whose group differences, nor any of their 8
    neighbours', is ``nsigma`` from its centre: away from jumps, RTN switches and the faint rims
    (inter-pixel capacitance, snowball halos) around them."""
    from scipy.ndimage import binary_erosion

    D = np.diff(cube, axis=0)
    med = trimmed_center(D)
    sd = np.sqrt(2 * np.asarray(read_noise_col, np.float32)[None, :] ** 2 + np.maximum(med, 0) / gain)
    quiet = (np.abs(D - med) < nsigma * sd).all(axis=0)
    return binary_erosion(quiet, structure=np.ones((3, 3), bool), border_value=1)


class RampPrep:
    """Reference-corrected blocks, saturation flags and measured noise of one integration."""

    def __init__(self, source: RampSource, integration: int = 0, *, gain: float | None = None,
                 saturation: float | None = None, read_noise: float | None = None, side_window: int = 11,
                 calibrate_gls: bool = True):
        source.check_integration(integration)
        self.source = source
        self.integration = integration
        self.n = source.n_groups
        self.ny, self.nx = ny, nx = source.frame_shape
        where = source.path or "<in-memory ramp>"
        if gain is not None:
            self.gain, self.gain_source = float(gain), "config"
        elif source.gain is not None:
            self.gain, self.gain_source = float(source.gain), "file"
        else:
            self.gain, self.gain_source = 1.0, "assumed"
            log.warning("%s: no gain in the file or the config: assuming 1 e- per %s for the Poisson noise",
                        where, source.unit)
        self.saturation = saturation if saturation is not None else source.saturation
        self.sci = science_mask((ny, nx), source.refpix)
        if not self.sci.any():
            from astrid_pipeline.errors import BadShapeError

            raise BadShapeError(source.path, "the frame holds only reference pixels")
        self.refc = ReferenceCorrector(source, integration, side_window=side_window)
        self.halo = self.refc.side_window // 2 if self.refc.active and self.refc.use_sides else 0
        self.col_output = output_geometry(nx, source.num_outputs)[0]
        n_out = int(self.col_output.max()) + 1
        self.z_scale_out = np.ones(n_out)
        if read_noise is not None:
            self.read_noise_out = np.full(n_out, float(read_noise))
            self.noise_source = "config"
        else:
            self.noise_source = "measured per output (second differences of clean pixels in strips across the frame)"
            self._measure_noise(calibrate_gls)
        if not (np.all(self.read_noise_out > 0) and np.all(np.isfinite(self.read_noise_out))):
            from astrid_pipeline.errors import EmptyDataError

            raise EmptyDataError(source.path, "cannot estimate a read noise: the ramp has no scatter")
        self.rn_col = self.read_noise_out[self.col_output].astype(np.float32)
        self.read_noise = float(np.sqrt(np.mean(self.read_noise_out**2)))

    def load(self, r0: int, r1: int):
        """Reference-corrected float32 block of rows ``r0:r1``, and ``(iy, ix, S)``: its saturating pixels
        with their per-group saturation flags."""
        # read a few rows more on each side so the row-smoothed side correction
        # of every row is the same whatever the blocking
        src, sat_level = self.source, self.saturation
        e0, e1 = max(0, r0 - self.halo), min(self.ny, r1 + self.halo)
        ext = src.read_rows(e0, e1, self.integration)
        if not ext.flags.writeable or ext.dtype != np.float32:
            ext = np.array(ext, dtype=np.float32)
        cube = ext[:, r0 - e0: r1 - e0]
        dq = src.saturated_rows(r0, r1, self.integration)
        anysat = np.zeros(cube.shape[1:], bool)
        if sat_level is not None:
            anysat |= cube.max(axis=0) >= np.float32(sat_level - 0.5)
        if dq is not None:
            anysat |= dq.any(axis=0)
        s_iy, s_ix = np.nonzero(anysat)
        S = np.zeros((cube.shape[0], len(s_iy)), bool)
        if sat_level is not None:
            S |= cube[:, s_iy, s_ix] >= np.float32(sat_level - 0.5)
        if dq is not None:
            S |= dq[:, s_iy, s_ix]
        self.refc.correct(ext, e0)
        return cube, (s_iy, s_ix, S)

    def _measure_noise(self, calibrate_gls: bool) -> None:
        # the same strips whatever the blocking, so results do not depend on it; several strips
        # spread over the frame, so one large event (a snowball) cannot dominate the sample
        col_output, gain, sci = self.col_output, self.gain, self.sci
        strips = noise_strips(self.ny)
        parts, oks = [], []
        for r0, r1 in strips:
            cube_s, (s_iy, s_ix, _) = self.load(r0, r1)
            if not np.isfinite(cube_s).all():
                raise NonFiniteRampError(self.source.path, f"rows {r0}:{r1} hold NaN or infinite values")
            ok_s = sci[r0:r1].copy()
            ok_s[s_iy, s_ix] = False
            parts.append(cube_s)
            oks.append(ok_s)
        cube = np.concatenate(parts, axis=1)
        ok = np.concatenate(oks, axis=0)
        del parts
        if not ok.any():
            ok = np.concatenate([sci[r0:r1] for r0, r1 in strips], axis=0)
        if cube.shape[0] >= 4:
            # leave out pixels with an outlier (jump, RTN switch, halo) at 4.5 sigma of a first, pooled estimate
            # (generous: the outputs differ by tens of per cent at most)
            first = float(estimate_read_noise(cube, ok, gain))
            clean = ok & clean_pixels(cube, np.full(self.nx, 1.2 * first, np.float32), gain)
            if clean.sum() >= 200:
                ok = clean
        self.read_noise_out = np.atleast_1d(estimate_read_noise(cube, ok, gain, col_output=col_output))
        if calibrate_gls and cube.shape[0] >= 4:
            z = gls_scale(cube, ok, self.read_noise_out[col_output], gain, col_output)
            self.z_scale_out = np.clip(z, Z_SCALE_RANGE[0], Z_SCALE_RANGE[1])
            if np.any(np.abs(self.z_scale_out - 1) > 0.15):
                log.warning("%s: the GLS jump statistic scatters by %s on clean pixels (1 expected): noise not "
                            "white in time or a wrong gain; thresholds scaled to match",
                            self.source.path or "<in-memory ramp>", np.round(self.z_scale_out, 3).tolist())
