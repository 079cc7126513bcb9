"""Physical simulation of H2RG up-the-ramp exposures with injected anomalies.

A ramp in DN is, for read ``k`` of a pixel::

    bias + offset_out + drift_out[k] + rows[k, y] + f_k(y, x) + (Q_k + RTN_k + n_k) / gain

with ``Q_k`` the accumulated charge (Poisson dark current, plus cosmic-ray
and snowball deposits from the frame they arrive, spread to the 3x3
neighbours by inter-pixel capacitance), ``RTN_k`` a two-state
random-telegraph offset (in the pixel's source follower, so not spread by
IPC), ``n_k`` white read noise (``read_noise`` and the extra
``gaussian_noise`` in quadrature, scaled per readout output by
``read_noise_amp_spread``), ``offset_out`` a constant and ``drift_out`` a
random-walk offset per output, ``rows`` a smooth pattern along rows and
``f_k`` pink (1/f) noise in the time the pixel is read: outputs are read
simultaneously, even ones left to right and odd ones right to left, at one
pixel per ``frame_time / (rows x row period)``, so the common 1/f noise makes
bands along rows (Rauscher 2015, PASP 127, 1144). It is drawn in two
bands: below the row rate as one series over the whole exposure sampled
per row (interpolated along the row), above it as independent series along
each row, with the pink variance of each band (ln of its frequency span).
Every term but the charge also reaches the reference pixels, which collect
none. Values are rounded to 16-bit DN and clipped at ``saturation_dn``.

The events are planned first (a sparse list of per-pixel deposits), then
the cube is generated and written block by block of rows, so the memory
needed is one block, not the cube. Every random draw comes from a generator
seeded by (seed, detector, exposure, block): the same seed gives the same
file, whatever machine.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np

from astrid_pipeline.science.ramps.config import CLASS_CODES, SimulationConfig

#: A pixel belongs to an event's truth mask when its deposit is at least this many
#: times the per-read noise (IPC crumbs far below the noise are not "hit" pixels)
TRUTH_MIN_SIGMA = 2.0


def _detector_salt(detector: str) -> int:
    return zlib.crc32(detector.encode("utf-8")) & 0x7FFFFFFF


def _rng(cfg: SimulationConfig, detector: str, exposure: int, *extra: int) -> np.random.Generator:
    return np.random.default_rng([cfg.seed, _detector_salt(detector), int(exposure), *extra])


@dataclass
class ExposurePlan:
    """Everything random that is not per-pixel noise: events, drifts, noise levels."""

    detector: str
    exposure: int
    shape: tuple
    num_frames: int
    gain: float
    read_noise_e: float
    gaussian_noise_e: float
    frame_time: float
    has_events: bool
    output_drift: np.ndarray  # (frames, outputs) DN
    row_pattern: np.ndarray  # (frames, rows) DN
    # deposits: one row per (pixel, frame) charge
    dep_y: np.ndarray
    dep_x: np.ndarray
    dep_frame: np.ndarray
    dep_charge: np.ndarray  # e-
    dep_event: np.ndarray
    # RTN pixels
    rtn_y: np.ndarray
    rtn_x: np.ndarray
    rtn_offset: np.ndarray  # e-
    rtn_states: np.ndarray  # (n_rtn, frames) uint8
    events: dict = field(default_factory=dict)  # column -> array
    class_mask: np.ndarray | None = None
    # readout outputs: white noise (e-) and constant offset (DN) of each
    amp_noise_e: np.ndarray | None = None
    amp_offset_dn: np.ndarray | None = None
    # 1/f noise below the row rate: (1 + outputs, frames * (rows + 1)) DN; row 0 common to all outputs
    flicker_slow: np.ndarray | None = None
    flicker_fast_dn: tuple = (0.0, 0.0)  # rms of the within-row band: (common, per output), DN

    @property
    def noise_e(self) -> float:
        """Total white noise per read, electrons."""
        return math.hypot(self.read_noise_e, self.gaussian_noise_e)

    @property
    def noise_dn(self) -> float:
        """Nominal white noise per read (DN), before the per-output spread."""
        return self.noise_e / self.gain

    @property
    def amp_noise_dn(self) -> np.ndarray:
        """White noise per read of each readout output (DN)."""
        if self.amp_noise_e is None:
            return np.array([self.noise_dn])
        return self.amp_noise_e / self.gain

    def noise_dn_columns(self, nx: int) -> np.ndarray:
        """White noise per read (DN) of every column (its output's)."""
        from astrid_pipeline.science.ramps.refpix import output_geometry

        amp = self.amp_noise_dn
        return amp[output_geometry(nx, len(amp))[0]]


# ----------------------------------------------------------------------------
# event shapes
# ----------------------------------------------------------------------------

def _ipc(fp: dict, alpha: float, alpha_diag: float = 0.0) -> dict:
    """Spread charge to the 3x3 neighbours (inter-pixel capacitance): ``alpha`` to each side, ``alpha_diag``
    to each corner, the rest stays."""
    if alpha <= 0 and alpha_diag <= 0:
        return fp
    out: dict = {}
    for (y, x), q in fp.items():
        out[(y, x)] = out.get((y, x), 0.0) + q * (1 - 4 * alpha - 4 * alpha_diag)
        for (dy, dx), a in (((1, 0), alpha), ((-1, 0), alpha), ((0, 1), alpha), ((0, -1), alpha),
                            ((1, 1), alpha_diag), ((1, -1), alpha_diag), ((-1, 1), alpha_diag),
                            ((-1, -1), alpha_diag)):
            if a > 0:
                k = (y + dy, x + dx)
                out[k] = out.get(k, 0.0) + q * a
    return out


def pink_noise(rng: np.random.Generator, lead: tuple, n: int) -> np.ndarray:
    """Zero-mean, unit-variance pink (1/f power) series of length ``n`` along the last axis (float32).

    Random complex Fourier amplitudes with modulus ~ f^-1/2 from the lowest
    non-zero frequency to Nyquist (no DC term).
    """
    from scipy import fft as sfft

    nf = n // 2 + 1
    k = np.arange(nf, dtype=np.float64)
    amp = np.zeros(nf)
    amp[1:] = k[1:] ** -0.5
    spec = (rng.standard_normal(lead + (nf,), dtype=np.float32)
            + 1j * rng.standard_normal(lead + (nf,), dtype=np.float32)) * amp.astype(np.float32)
    x = sfft.irfft(spec, n=n, axis=-1)
    # variance of one sample: (2 / n^2) * sum over the two real parts of every positive frequency
    w = np.full(nf, 2.0)
    w[0] = 0.0
    if n % 2 == 0:
        w[-1] = 1.0
    var = float((w * amp**2).sum() * 2.0 / n**2) if n > 1 else 1.0
    return (x / np.float32(math.sqrt(max(var, 1e-30)))).astype(np.float32)


def flicker_band_variances(num_frames: int, ny: int, row_period: int, rms: float) -> tuple[float, float]:
    """Split the variance ``rms**2`` of pink noise into the band below the row rate and the band within a row.

    Pink noise has equal variance per e-fold of frequency: the slow band spans
    the exposure (frames x (rows + 1) row times) down to two row times, the
    fast band one row (``row_period`` pixel times) down to two pixel times.
    """
    slow = math.log(max(num_frames * (ny + 1) / 2.0, 1.0))
    fast = math.log(max(row_period / 2.0, 1.0))
    tot = slow + fast
    if tot <= 0 or rms <= 0:
        return 0.0, 0.0
    return rms**2 * slow / tot, rms**2 * fast / tot


def _spot(rng, yc: float, xc: float) -> dict:
    """Pixel-integrated Gaussian spot of sub-pixel width; fractions sum to 1."""
    from scipy.special import erf

    s = rng.uniform(0.25, 0.7)
    iy, ix = int(math.floor(yc)), int(math.floor(xc))
    ys = np.arange(iy - 2, iy + 3)
    xs = np.arange(ix - 2, ix + 3)

    def frac(edges_lo, c):
        a = (edges_lo - c) / (s * math.sqrt(2))
        b = (edges_lo + 1 - c) / (s * math.sqrt(2))
        return 0.5 * (erf(b) - erf(a))

    fy, fx = frac(ys, yc), frac(xs, xc)
    w = np.outer(fy, fx)
    w /= w.sum()
    return {(int(y), int(x)): float(w[i, j]) for i, y in enumerate(ys) for j, x in enumerate(xs) if w[i, j] > 1e-4}


def _track(rng, yc: float, xc: float) -> dict:
    """A straight track through (yc, xc): charge spread evenly along its length."""
    length = rng.uniform(2.0, 12.0)
    ang = rng.uniform(0, math.pi)
    t = np.linspace(-length / 2, length / 2, max(int(length * 6), 4))
    ys = np.floor(yc + t * math.sin(ang)).astype(int)
    xs = np.floor(xc + t * math.cos(ang)).astype(int)
    fp: dict = {}
    for y, x in zip(ys, xs):
        fp[(int(y), int(x))] = fp.get((int(y), int(x)), 0.0) + 1.0 / len(t)
    return fp


def _clip_footprint(fp: dict, lo: tuple, hi: tuple) -> dict:
    return {k: v for k, v in fp.items() if lo[0] <= k[0] < hi[0] and lo[1] <= k[1] < hi[1]}


def _loguniform(rng, lo: float, hi: float) -> float:
    if lo <= 0:
        return float(rng.uniform(lo, hi))
    return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))


def _rtn_sequence(rng, n: int, period: float, duty: float) -> np.ndarray:
    """Two-state switching with exponential dwell times (mean high = period*duty)."""
    mean_hi = max(period * duty, 0.5)
    mean_lo = max(period * (1 - duty), 0.5)
    state = int(rng.random() < duty)
    seq = np.empty(n, dtype=np.uint8)
    k = 0
    while k < n:
        dwell = max(1, int(math.ceil(rng.exponential(mean_hi if state else mean_lo))))
        seq[k : k + dwell] = state
        k += dwell
        state = 1 - state
    return seq


# ----------------------------------------------------------------------------
# planning
# ----------------------------------------------------------------------------

def plan_exposure(cfg: SimulationConfig, detector: str, exposure: int) -> ExposurePlan:
    """Draw the events, drifts and noise levels of one exposure (no per-pixel noise yet)."""
    from astrid_pipeline.errors import ConfigError

    if detector not in cfg.gain_library:
        raise ConfigError(
            f"detector {detector!r} is not in the gain library ({', '.join(cfg.gain_library)})"
        )
    if not 0 <= exposure < cfg.num_exposures:
        raise ConfigError(f"exposure {exposure} is out of range: the config has {cfg.num_exposures} exposures")
    rng = _rng(cfg, detector, exposure, 0)
    ny, nx = cfg.image_shape
    n = cfg.num_frames
    b = cfg.refpix_border
    gain = cfg.gain_library[detector]
    has_events = exposure < cfg.num_exposure_events and cfg.injection_type != "none"
    rn = float(rng.uniform(*cfg.read_noise_range))
    gn = float(rng.uniform(*cfg.gaussian_noise_range))
    noise_e = math.hypot(rn, gn)

    drift = np.cumsum(rng.normal(0.0, cfg.output_drift_dn, size=(n, cfg.num_outputs)), axis=0)
    rows = np.arange(ny)[None, :]
    pattern = np.zeros((n, ny))
    for _ in range(3):
        per = rng.uniform(64, 512)
        amp = cfg.row_drift_dn * rng.uniform(0.3, 1.0)
        phase = rng.uniform(0, 2 * np.pi, size=(n, 1))
        pattern += amp * np.sin(2 * np.pi * rows / per + phase)

    lo, hi = (b, b), (ny - b, nx - b)
    deps: list[tuple] = []  # (y, x, frame, charge, event)
    ev: dict[str, list] = {k: [] for k in (
        "event_id", "type", "x", "y", "first_frame", "amplitude", "radius", "n_pixels",
        "period", "duty_fraction", "n_transitions")}
    mask = np.zeros((ny, nx), dtype=np.uint8)
    truth_min = TRUTH_MIN_SIGMA * noise_e
    full_well_e = (cfg.saturation_dn - cfg.bias_dn) * gain

    def add_event(kind, x, y, f, amp, radius, npix, period=np.nan, duty=np.nan, ntr=-1):
        eid = len(ev["event_id"])
        for k, v in zip(ev, (eid, kind, x, y, f, amp, radius, npix, period, duty, ntr)):
            ev[k].append(v)
        return eid

    n_cr = int(rng.integers(cfg.cosmic_ray_per_exp_range[0], cfg.cosmic_ray_per_exp_range[1] + 1)) \
        if has_events and cfg.injects("cosmic_ray") else 0
    n_sb = int(rng.integers(cfg.snowballs_per_exp_range[0], cfg.snowballs_per_exp_range[1] + 1)) \
        if has_events and cfg.injects("snowball") else 0
    n_rtn = int(rng.integers(cfg.rtn_per_exp_range[0], cfg.rtn_per_exp_range[1] + 1)) \
        if has_events and cfg.injects("rtn") else 0

    # --- snowballs first, so cosmic rays can be kept off their cores ----------
    sb_cores = []
    for _ in range(n_sb):
        r_core = float(rng.uniform(*cfg.snowball_radius_range))
        margin = int(math.ceil(r_core)) + 2
        if hi[0] - lo[0] <= 2 * margin or hi[1] - lo[1] <= 2 * margin:
            raise ConfigError(
                f"snowball radius {r_core:.1f} px does not fit in the {hi[0]-lo[0]}x{hi[1]-lo[1]} active area"
            )
        yc = float(rng.uniform(lo[0] + margin, hi[0] - margin))
        xc = float(rng.uniform(lo[1] + margin, hi[1] - margin))
        f = int(rng.integers(1, n))
        ratio = float(rng.uniform(*cfg.snowball_halo_amplitude_ratio_range))
        decay = float(rng.uniform(*cfg.snowball_halo_decay_scale_range))
        fill = float(rng.uniform(*cfg.snowball_core_fill_range))
        q_core = fill * full_well_e
        r_out = r_core + decay * math.log(max(ratio * q_core / max(0.5 * noise_e, 1.0), 1.0)) + 1
        r_out = min(r_out, r_core + 8 * decay)
        R = int(math.ceil(r_out)) + 1
        yy, xx = np.mgrid[int(yc) - R : int(yc) + R + 1, int(xc) - R : int(xc) + R + 1]
        rr = np.hypot(yy + 0.5 - yc, xx + 0.5 - xc)
        inside = (yy >= lo[0]) & (yy < hi[0]) & (xx >= lo[1]) & (xx < hi[1]) & (rr <= r_out)
        core = inside & (rr <= r_core)
        halo = inside & (rr > r_core)
        q_halo0 = np.where(halo, 0.7 * ratio * q_core * np.exp(-(rr - r_core) / decay), 0.0)
        q_halo1 = np.where(halo, 0.3 * ratio * q_core * np.exp(-(rr - r_core) / (1.3 * decay)), 0.0)
        eid = add_event("snowball", xc - 0.5, yc - 0.5, f, q_core, r_core, int(core.sum()))
        sb_cores.append((yc, xc, r_out))
        for y, x in zip(yy[core], xx[core]):
            deps.append((y, x, f, q_core, eid))
            mask[y, x] = CLASS_CODES["snowball"]
        for y, x, q0, q1 in zip(yy[halo], xx[halo], q_halo0[halo], q_halo1[halo]):
            if q0 >= 0.5:
                deps.append((y, x, f, q0, eid))
            if f + 1 < n and q1 >= 0.5:
                deps.append((y, x, f + 1, q1, eid))
            if q0 >= truth_min:
                mask[y, x] = CLASS_CODES["snowball"]
        ev["n_pixels"][eid] = int((mask[yy[inside], xx[inside]] == CLASS_CODES["snowball"]).sum())

    # --- cosmic rays ----------------------------------------------------------
    for _ in range(n_cr):
        for _try in range(20):
            yc = float(rng.uniform(lo[0], hi[0]))
            xc = float(rng.uniform(lo[1], hi[1]))
            if all(math.hypot(yc - sy, xc - sx) > sr + 3 for sy, sx, sr in sb_cores):
                break
        f = int(rng.integers(1, n))
        q = _loguniform(rng, *cfg.cosmic_ray_charge_range)
        kind_track = rng.random() < cfg.cosmic_ray_track_fraction
        fp = _track(rng, yc, xc) if kind_track else _spot(rng, yc, xc)
        fp = _clip_footprint(_ipc(fp, cfg.ipc_alpha, cfg.ipc_alpha_diagonal), lo, hi)
        if not fp:
            fp = {(min(max(int(yc), lo[0]), hi[0] - 1), min(max(int(xc), lo[1]), hi[1] - 1)): 1.0}
        keys = np.array(list(fp.keys()))
        w = np.array(list(fp.values()))
        cy = float(keys[:, 0] @ w / w.sum())  # pixel centres are at integer coordinates
        cx = float(keys[:, 1] @ w / w.sum())
        big = w >= 0.05 * w.max()
        radius = float(np.max(np.hypot(keys[big, 0] - cy, keys[big, 1] - cx))) + 0.5
        eid = add_event("cosmic_ray", cx, cy, f, q, radius, int((q * w >= truth_min).sum()))
        for (y, x), frac in fp.items():
            deps.append((y, x, f, q * frac, eid))
            if q * frac >= truth_min and mask[y, x] != CLASS_CODES["snowball"]:
                mask[y, x] = CLASS_CODES["cosmic_ray"]

    # --- RTN pixels -----------------------------------------------------------
    n_active = (hi[0] - lo[0]) * (hi[1] - lo[1])
    idx = rng.choice(n_active, size=min(n_rtn, n_active), replace=False) if n_rtn else np.zeros(0, int)
    rtn_y = (idx // (hi[1] - lo[1]) + lo[0]).astype(np.int32)
    rtn_x = (idx % (hi[1] - lo[1]) + lo[1]).astype(np.int32)
    rtn_off = np.zeros(len(idx))
    rtn_states = np.zeros((len(idx), n), dtype=np.uint8)
    for i in range(len(idx)):
        amp = float(rng.uniform(*cfg.rtn_offset_range))
        per = float(rng.uniform(*cfg.rtn_period_range))
        duty = float(rng.uniform(*cfg.rtn_duty_fraction_range))
        seq = _rtn_sequence(rng, n, per, duty)
        rtn_off[i] = amp
        rtn_states[i] = seq
        ntr = int(np.count_nonzero(np.diff(seq)))
        first = int(np.argmax(np.diff(seq) != 0) + 1) if ntr else -1
        add_event("telegraph_noise", float(rtn_x[i]), float(rtn_y[i]), first, amp, 0.5, 1, per, duty, ntr)
        if mask[rtn_y[i], rtn_x[i]] == 0:
            mask[rtn_y[i], rtn_x[i]] = CLASS_CODES["telegraph_noise"]

    if deps:
        d = np.array(deps, dtype=np.float64)
        order = np.lexsort((d[:, 1], d[:, 0], d[:, 2]))
        d = d[order]
        dep = (d[:, 0].astype(np.int32), d[:, 1].astype(np.int32), d[:, 2].astype(np.int32),
               d[:, 3], d[:, 4].astype(np.int32))
    else:
        dep = (np.zeros(0, np.int32),) * 3 + (np.zeros(0),) + (np.zeros(0, np.int32),)

    # readout outputs and 1/f noise: their own stream, so the events of a seed do not depend on them
    from astrid_pipeline.science.ramps.refpix import output_geometry

    rng2 = _rng(cfg, detector, exposure, 2)
    n_out = cfg.num_outputs
    spread = np.clip(1.0 + cfg.read_noise_amp_spread * rng2.standard_normal(n_out), 0.5, 1.5)
    amp_noise_e = noise_e * spread if cfg.read_noise_amp_spread > 0 else np.full(n_out, noise_e)
    amp_offset = rng2.normal(0.0, cfg.amp_offset_spread_dn, n_out) if cfg.amp_offset_spread_dn > 0 else np.zeros(n_out)
    _, _, row_period = output_geometry(nx, n_out)
    slow_c, fast_c = flicker_band_variances(n, ny, row_period, cfg.one_over_f_dn)
    slow_a, fast_a = flicker_band_variances(n, ny, row_period, cfg.one_over_f_amp_dn)
    flicker_slow = None
    if slow_c > 0 or slow_a > 0:
        length = n * (ny + 1) + 1
        flicker_slow = np.zeros((1 + n_out, length), np.float32)
        if slow_c > 0:
            flicker_slow[0] = pink_noise(rng2, (), length) * np.float32(math.sqrt(slow_c))
        if slow_a > 0:
            flicker_slow[1:] = pink_noise(rng2, (n_out,), length) * np.float32(math.sqrt(slow_a))

    events = {
        "event_id": np.asarray(ev["event_id"], dtype=np.int64),
        "type": np.asarray(ev["type"], dtype=object),
        "x": np.asarray(ev["x"], dtype=np.float64),
        "y": np.asarray(ev["y"], dtype=np.float64),
        "first_frame": np.asarray(ev["first_frame"], dtype=np.int64),
        "amplitude": np.asarray(ev["amplitude"], dtype=np.float64),
        "radius": np.asarray(ev["radius"], dtype=np.float64),
        "n_pixels": np.asarray(ev["n_pixels"], dtype=np.int64),
        "period": np.asarray(ev["period"], dtype=np.float64),
        "duty_fraction": np.asarray(ev["duty_fraction"], dtype=np.float64),
        "n_transitions": np.asarray(ev["n_transitions"], dtype=np.int64),
    }
    return ExposurePlan(
        detector=detector, exposure=exposure, shape=(ny, nx), num_frames=n, gain=gain,
        read_noise_e=rn, gaussian_noise_e=gn, frame_time=cfg.frame_time, has_events=has_events,
        output_drift=drift, row_pattern=pattern,
        dep_y=dep[0], dep_x=dep[1], dep_frame=dep[2], dep_charge=dep[3], dep_event=dep[4],
        rtn_y=rtn_y, rtn_x=rtn_x, rtn_offset=rtn_off, rtn_states=rtn_states,
        events=events, class_mask=mask, amp_noise_e=amp_noise_e, amp_offset_dn=amp_offset,
        flicker_slow=flicker_slow, flicker_fast_dn=(math.sqrt(fast_c), math.sqrt(fast_a)),
    )


# ----------------------------------------------------------------------------
# block generation
# ----------------------------------------------------------------------------

def row_blocks(ny: int, block: int) -> Iterator[tuple[int, int]]:
    for r0 in range(0, ny, block):
        yield r0, min(ny, r0 + block)


def simulate_block(cfg: SimulationConfig, plan: ExposurePlan, r0: int, r1: int, block_index: int):
    """Generate rows ``r0:r1`` of all frames: (uint16 cube (frames, rows, cols), dark map e-/s)."""
    ny, nx = plan.shape
    n = plan.num_frames
    b = cfg.refpix_border
    R = r1 - r0
    rng = _rng(cfg, plan.detector, plan.exposure, 1, block_index)
    active = np.zeros((R, nx), dtype=bool)
    ar0, ar1 = max(r0, b), min(r1, ny - b)
    if ar1 > ar0:
        active[ar0 - r0 : ar1 - r0, b : nx - b] = True
    dark = np.where(active, rng.uniform(*cfg.dark_current_range, size=(R, nx)), 0.0)
    bias = (cfg.bias_dn + rng.normal(0.0, cfg.bias_spread_dn, size=(R, nx))).astype(np.float32)
    lam = dark * plan.frame_time
    from astrid_pipeline.science.ramps.refpix import output_geometry

    out_of_col, read_pos, row_period = output_geometry(nx, cfg.num_outputs)
    frac = (read_pos / row_period).astype(np.float32)  # fraction of the row time elapsed at each column
    rng_f = _rng(cfg, plan.detector, plan.exposure, 3, block_index)
    fast_c, fast_a = (np.float32(v) for v in plan.flicker_fast_dn)
    rows_idx = np.arange(r0, r1)
    noise_col = plan.amp_noise_e[out_of_col].astype(np.float32) if plan.amp_noise_e is not None else None
    offset_col = (plan.amp_offset_dn[out_of_col].astype(np.float32)
                  if plan.amp_offset_dn is not None and np.any(plan.amp_offset_dn) else None)

    sel = (plan.dep_y >= r0) & (plan.dep_y < r1)
    dy, dx, dfr, dq = plan.dep_y[sel] - r0, plan.dep_x[sel], plan.dep_frame[sel], plan.dep_charge[sel]
    rsel = (plan.rtn_y >= r0) & (plan.rtn_y < r1)
    ry, rx, roff, rst = plan.rtn_y[rsel] - r0, plan.rtn_x[rsel], plan.rtn_offset[rsel], plan.rtn_states[rsel]

    charge = np.zeros((R, nx), dtype=np.float64)
    cube = np.empty((n, R, nx), dtype=np.uint16)
    noise_e = np.float32(plan.noise_e)
    inv_g = np.float32(1.0 / plan.gain)
    sat = np.float32(cfg.saturation_dn)
    for k in range(n):
        charge += rng.poisson(lam)
        m = dfr == k
        if m.any():
            np.add.at(charge, (dy[m], dx[m]), dq[m])
        sig = charge.astype(np.float32)
        if len(ry):
            sig[ry, rx] += (roff * rst[:, k]).astype(np.float32)
        sig += rng.standard_normal(size=(R, nx), dtype=np.float32) * (noise_col if noise_col is not None else noise_e)
        dn = bias + sig * inv_g
        dn += plan.output_drift[k, out_of_col].astype(np.float32)[None, :]
        dn += plan.row_pattern[k, r0:r1].astype(np.float32)[:, None]
        if offset_col is not None:
            dn += offset_col[None, :]
        if plan.flicker_slow is not None:
            i0 = k * (ny + 1) + rows_idx
            fs = plan.flicker_slow
            lo_c, hi_c = fs[0, i0], fs[0, i0 + 1]
            dn += lo_c[:, None] + (hi_c - lo_c)[:, None] * frac[None, :]
            lo_a, hi_a = fs[1:, i0][out_of_col].T, fs[1:, i0 + 1][out_of_col].T  # (R, nx)
            dn += lo_a + (hi_a - lo_a) * frac[None, :]
        if fast_c > 0:
            dn += (pink_noise(rng_f, (R,), row_period) * fast_c)[:, read_pos]
        if fast_a > 0:
            fa = pink_noise(rng_f, (cfg.num_outputs, R), row_period) * fast_a  # (outputs, R, period)
            dn += fa[out_of_col, :, read_pos].T
        np.rint(dn, out=dn)
        np.clip(dn, 0, sat, out=dn)
        cube[k] = dn
    return cube, dark.astype(np.float32)


def ramp_attrs(cfg: SimulationConfig, plan: ExposurePlan) -> dict:
    return {
        "unit": "DN",
        "axes": "frame, y, x",
        "detector": plan.detector,
        "exposure": f"{plan.exposure:03d}",
        "gain": plan.gain,
        "gain_unit": "e-/DN",
        "read_noise_e": plan.read_noise_e,
        "gaussian_noise_e": plan.gaussian_noise_e,
        "read_noise_dn": plan.noise_dn,
        "read_noise_dn_per_output": [float(v) for v in plan.amp_noise_dn],
        "preset": cfg.preset,
        "one_over_f_dn": cfg.one_over_f_dn,
        "ipc_alpha": cfg.ipc_alpha,
        "ipc_alpha_diagonal": cfg.ipc_alpha_diagonal,
        "frame_time": plan.frame_time,
        "frame_time_unit": "s",
        "saturation_dn": cfg.saturation_dn,
        "bias_dn": cfg.bias_dn,
        "refpix_border": cfg.refpix_border,
        "num_outputs": cfg.num_outputs,
        "seed": cfg.seed,
        "has_events": bool(plan.has_events),
        "simulated": True,
    }


def simulate_exposure(cfg: SimulationConfig, detector: str, exposure: int, path=None):
    """Simulate one exposure.

    With ``path``, write the HDF5 ramp (``/ramp`` chunked by row blocks across
    all frames, ``/truth/...``) atomically and return the plan. Without,
    return ``(cube, plan)`` with the whole cube in memory (small ramps only).
    """
    plan = plan_exposure(cfg, detector, exposure)
    ny, nx = plan.shape
    n = plan.num_frames
    blk = min(cfg.row_block, ny)
    if path is None:
        cube = np.empty((n, ny, nx), dtype=np.uint16)
        for i, (r0, r1) in enumerate(row_blocks(ny, blk)):
            cube[:, r0:r1], _ = simulate_block(cfg, plan, r0, r1, i)
        return cube, plan

    from astrid_pipeline.io.hdf5_io import open_atomic_hdf5, set_attrs, write_dataset, write_table_group

    with open_atomic_hdf5(path, step="ramp_simulation", attrs={"config": cfg.to_dict()}) as f:
        ds = f.create_dataset("ramp", shape=(n, ny, nx), dtype=np.uint16, chunks=(n, blk, nx))
        set_attrs(ds, ramp_attrs(cfg, plan))
        tg = f.create_group("truth")
        dark_ds = tg.create_dataset("dark_current", shape=(ny, nx), dtype=np.float32, chunks=(blk, nx))
        dark_ds.attrs["unit"] = "electron / s"
        for i, (r0, r1) in enumerate(row_blocks(ny, blk)):
            cube, dark = simulate_block(cfg, plan, r0, r1, i)
            ds[:, r0:r1, :] = cube
            dark_ds[r0:r1, :] = dark
            del cube
        write_dataset(tg, "class_mask", plan.class_mask, unit="",
                      description="0 background, 1 cosmic ray, 2 telegraph noise, 3 snowball",
                      attrs={"codes": CLASS_CODES})
        write_table_group(tg, "events", plan.events,
                          units={"x": "pix", "y": "pix", "amplitude": "electron", "radius": "pix", "period": "frame"})
        write_table_group(tg, "deposits", {
            "y": plan.dep_y, "x": plan.dep_x, "frame": plan.dep_frame,
            "charge": plan.dep_charge, "event_id": plan.dep_event,
        }, units={"charge": "electron"})
        write_dataset(tg, "rtn_states", plan.rtn_states if len(plan.rtn_states) else np.zeros((0, n), np.uint8))
        write_table_group(tg, "rtn_pixels", {"y": plan.rtn_y, "x": plan.rtn_x, "offset": plan.rtn_offset},
                          units={"offset": "electron"})
        counts = {k: int(np.sum(plan.events["type"] == k)) for k in ("cosmic_ray", "telegraph_noise", "snowball")}
        set_attrs(tg, {"event_counts": counts})
    return plan


def exposure_index(key: str) -> int:
    """'002' -> 2 (exposure partition keys are zero-padded integers)."""
    from astrid_pipeline.errors import ConfigError

    try:
        return int(key)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"exposure key {key!r} is not a number") from exc

