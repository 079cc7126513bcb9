"""Reference-pixel correction of H2RG ramps (after the JWST pipeline's refpix step).

H2RG detectors carry a border of reference pixels (4 on each side for the
JWST and Euclid arrays, 5 for HST WFC3/IR) that see the readout drifts but
collect no photo-charge. Per group we remove

1. the drift of each readout output, measured on the top and bottom
   reference rows (mean of that output's columns), and
2. the drift common to a row (1/f "banding"), measured on the left and right
   reference columns and smoothed over ``side_window`` rows.

Both corrections are taken relative to their time mean, so the corrected
ramp keeps its level (saturation and the bias stay meaningful) and only the
group-to-group drifts go. Top and bottom reference rows are read once per
integration; each row block then needs only its own rows.
"""

from __future__ import annotations

import numpy as np


class ReferenceCorrector:
    """Per-integration reference-pixel correction applied block by block."""

    def __init__(self, source, integration: int = 0, *, side_window: int = 11, use_sides: bool = True):
        self.n_groups = source.n_groups
        ny, nx = source.frame_shape
        bot, top, left, right = source.refpix
        self.left, self.right = left, right
        self.ny, self.nx = ny, nx
        self.side_window = side_window
        self.use_sides = use_sides and (left + right) > 0
        self.active = not source.refpix_corrected and (bot + top + left + right) > 0
        self.output_offsets = None
        if not self.active:
            return
        n_out = max(1, int(source.num_outputs))
        self.col_output = output_geometry(nx, n_out)[0]
        rows = []
        if bot:
            rows.append(source.read_rows(0, bot, integration))
        if top:
            rows.append(source.read_rows(ny - top, ny, integration))
        if rows:
            ref = np.concatenate(rows, axis=1).astype(np.float64)  # (groups, nref, nx)
            cols = np.zeros(nx, dtype=bool)
            cols[left : nx - right] = True
            offs = np.zeros((self.n_groups, n_out))
            for o in range(n_out):
                sel = cols & (self.col_output == o)
                if sel.any():
                    offs[:, o] = ref[:, :, sel].mean(axis=(1, 2))
            offs -= offs.mean(axis=0, keepdims=True)
            self.output_offsets = offs.astype(np.float32)

    def correct(self, block: np.ndarray, r0: int) -> np.ndarray:
        """Correct a float32 block (groups, rows, cols) of rows ``r0:`` in place and return it."""
        if not self.active:
            return block
        if self.output_offsets is not None:
            block -= self.output_offsets[:, self.col_output][:, None, :]
        if self.use_sides:
            parts = []
            if self.left:
                parts.append(block[:, :, : self.left])
            if self.right:
                parts.append(block[:, :, self.nx - self.right :])
            side = np.concatenate(parts, axis=2).mean(axis=2)  # (groups, rows)
            side -= side.mean(axis=0, keepdims=True)
            if self.side_window > 1 and side.shape[1] > 1:
                from scipy.ndimage import uniform_filter1d

                side = uniform_filter1d(side, size=min(self.side_window, side.shape[1]), axis=1, mode="nearest")
            block -= side[:, :, None].astype(np.float32)
        return block


#: pixel times of overhead at the end of each row of each output (JWST SIDECAR full-frame timing)
ROW_OVERHEAD_PIXELS = 12


def output_geometry(nx: int, n_outputs: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Readout output of each column, its position in that output's read order, and the row period.

    Outputs are strips of columns read simultaneously; as in the H2RG's
    SIDECAR readout, even outputs read left to right and odd outputs right to
    left. Returns ``(output index (nx,), read position (nx,), row period in
    pixel times = widest output + ROW_OVERHEAD_PIXELS)``.
    """
    n_out = max(1, int(n_outputs))
    out = (np.arange(nx) * n_out // nx).astype(np.intp)
    pos = np.zeros(nx, dtype=np.intp)
    width = 0
    for o in range(n_out):
        cols = np.flatnonzero(out == o)
        if len(cols) == 0:
            continue
        width = max(width, len(cols))
        pos[cols] = np.arange(len(cols)) if o % 2 == 0 else np.arange(len(cols))[::-1]
    return out, pos, width + ROW_OVERHEAD_PIXELS


def science_mask(shape: tuple, refpix: tuple) -> np.ndarray:
    """True on light-sensitive pixels, False on the reference border."""
    ny, nx = shape
    bot, top, left, right = refpix
    m = np.zeros(shape, dtype=bool)
    m[bot : ny - top, left : nx - right] = True
    return m
