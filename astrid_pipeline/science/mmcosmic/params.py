"""numina-crmasks parameters: parse, fill defaults, validate.

A numina-crmasks YAML file has six top-level keys (``images``, ``extnum``,
``gain``, ``rnoise``, ``bias``, ``requirements``); ``requirements`` holds the
general execution parameters and one block per method, told apart by their
prefix (``la_`` L.A.Cosmic, ``pc_`` PyCosmic, ``dc_`` deepCR, ``nn_``
Cosmic-CoNN, ``mm_`` M.M.Cosmic). The same file is accepted here unchanged:

* every key numina knows is accepted; missing keys take numina's defaults
  (those of its ``params_example1.yaml``);
* ``crmethod`` may be ``mmcosmic``, ``lacosmic``, ``mm_lacosmic``,
  ``deepcr``, ``mm_deepcr``, ``conn`` or ``mm_conn``; the network methods run
  this project's own trained CR networks of those families
  (:mod:`.aux_ml`; ``dc_*`` / ``nn_*`` parameters, plus the extension keys
  ``dc_checkpoint`` / ``nn_checkpoint``); the PyCosmic methods are refused
  with an error that names them (their ``pc_`` parameters are still
  accepted, and ignored, so an unchanged file only needs its ``crmethod``
  edited);
* ``interactive``, ``verify_cr`` and the plotting knobs are accepted; this
  implementation never prompts or opens a window, so the interactive
  choices of numina (fixed points, boundary parameters, re-running the
  simulations) are given here as parameters.

Extensions (not in numina; all optional, in ``requirements``):

* ``mm_xbinning``: ``quantile`` (default), ``asinh`` or ``linear`` (numina's):
  how the x axis of the diagnostic diagram is cut into bins before the
  detection boundary is measured.
* ``mm_nbins_xdiag``: number of x bins (default 10; numina uses 100 linear bins).
* ``mm_false_per_bin``: pixels of one image expected above each cross
  (default 1, numina's rule; lower is stricter; needs
  ``mm_nsimulations * mm_false_per_bin >= 1``).
* ``mm_local_sigma``: a pixel above the boundary is kept only if its median
  stands more than this many sigma (one exposure's noise) above the median
  of its 24 neighbours (default 3; 0 = numina's behaviour). It drops
  pixels whose y is large only because their minimum came out low.
* ``aux_targets``: ``median`` (default) runs the auxiliary single-image
  method on the median (and the refined mean) only; ``all`` also runs it on
  the mean and on every exposure, as numina does.
* ``mm_threads``: worker threads for the simulations (0 = up to 2).
* ``seeing_tolerance``: warn (log, header ``SEEWARN``, ``diagnostic_seeing.csv``,
  the run's diagnostics) when the stellar FWHM varies across the stack by
  more than this fraction, (worst - best) / best (default 0.2).
* ``psf_match``: convolve every exposure to the worst seeing (a Gaussian of
  FWHM sqrt(worst^2 - own^2)) before anything else (default False).

Accepted but without effect here: ``semiwindow``, ``color_scale``,
``maxplots`` and ``verify_cr`` (numina's per-CR PDF pages and prompts are
not produced), ``la_verbose``, and ``la_gain_apply`` (AUXCLEAN is always in
ADU, bias subtracted). ``mm_ydiag_max`` only sets the plotted y range (the
crosses are measured without a y cut). ``mm_hist2d_min_neighbors`` removes
isolated bins of the simulated histogram as in numina, but on this
implementation's finer (x bin, 0.01 sigma) histogram.

Units: ``gain`` is electrons per ADU, ``rnoise`` and ``bias`` are ADU.
Pixel coordinates and regions follow the FITS convention (first pixel is 1,
limits inclusive): ``[xmin, xmax, ymin, ymax]``.
"""

from __future__ import annotations

import ast
import math
import os
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Mapping

from .errors import ParameterError, UnsupportedMethodError
from astrid_pipeline.io.safe_yaml import clip, short

#: crmethod values this implementation runs
SUPPORTED_CRMETHODS = ("mmcosmic", "lacosmic", "mm_lacosmic", "deepcr", "mm_deepcr", "conn", "mm_conn")
#: crmethod values numina-crmasks knows but that are not implemented here
UNSUPPORTED_CRMETHODS = {
    "pycosmic": "PyCosmic",
    "mm_pycosmic": "PyCosmic",
}
VALID_COMBINATIONS = ("mean", "median", "min", "mediancr", "meancrt", "meancr", "meancr2")
DEFAULT_WEIGHT_FIXED_POINTS = 10000.0

_TOP_LEVEL = ("images", "extnum", "gain", "rnoise", "bias", "requirements")

#: allowed range of the integer parameters. The upper bounds keep a parameter file from asking for unbounded
#: work before anything starts (``mm_nsimulations: 1e9`` would redraw the whole stack a billion times); each is
#: far above any value numina's documentation uses (mm_nsimulations 10, dilation 1, la_niter 4, knots 5)
INTEGER_RANGES = {
    "dilation": (0, 100), "semiwindow": (1, 1000), "mm_dilation": (0, 100), "la_niter": (1, 100),
    "la_padwidth": (0, 1000), "mm_knots_splfit": (2, 100), "mm_nsimulations": (1, 1000),
    "mm_niter_boundary_extension": (0, 100), "mm_nbins_xdiag": (3, 1000), "mm_threads": (0, 64),
}
MAX_PSFSIZE = 101
MAX_IMAGES = 1000


@dataclass(frozen=True)
class Requirements:
    """The ``requirements`` block, validated, with numina's defaults."""

    crmethod: str = "mm_lacosmic"
    use_auxmedian: bool = False
    interactive: bool = False
    flux_factor: Any = None  # None | "auto" | float | tuple of floats
    flux_factor_regions: tuple = ()
    apply_flux_factor_to: str = "simulated"
    dilation: int = 0
    regions_to_be_skipped: tuple = ()
    pixels_to_be_flagged_as_cr: tuple = ()
    pixels_to_be_ignored_as_cr: tuple = ()
    pixels_to_be_replaced_by_local_median: tuple = ()
    verify_cr: bool = False
    semiwindow: int = 15
    color_scale: str = "zscale"
    maxplots: int = -1
    # L.A.Cosmic (two values: peaks run, tails run)
    la_gain_apply: bool = True
    la_sigclip: tuple = (5.0, 3.0)
    la_sigfrac: tuple = (0.3, 0.3)
    la_objlim: tuple = (5.0, 5.0)
    la_satlevel: float = 65535.0
    la_niter: int = 4
    la_sepmed: bool = True
    la_cleantype: str = "meanmask"
    la_fsmode: str = "convolve"
    la_psfmodel: str = "gaussxy"
    la_psffwhm_x: float = 2.5
    la_psffwhm_y: float = 2.5
    la_psfsize: int = 11
    la_psfbeta: float = 4.765
    la_verbose: bool = False
    la_padwidth: int = 10
    # M.M.Cosmic
    mm_cr_coincidences: int = 2
    mm_photon_distribution: str = "poisson"
    mm_nbinom_shape: float = 10.0
    mm_synthetic: str = "median"
    mm_hist2d_min_neighbors: int = 0
    mm_ydiag_max: float = 0.0
    mm_dilation: int = 1
    mm_xy_offsets: tuple | None = None
    mm_crosscorr_region: tuple | None = None
    mm_boundary_fit: str = "spline"
    mm_knots_splfit: int = 5
    mm_fixed_points_in_boundary: tuple = ()
    mm_nsimulations: int = 10
    mm_niter_boundary_extension: int = 5
    mm_weight_boundary_extension: float = 2.0
    mm_threshold_rnoise: float = 3.0
    mm_minimum_max2d_rnoise: float = 5.0
    mm_seed: int | None = 123456
    # extensions of this implementation
    mm_xbinning: str = "quantile"
    mm_nbins_xdiag: int = 10
    mm_false_per_bin: float = 1.0
    mm_local_sigma: float = 3.0
    aux_targets: str = "median"
    mm_threads: int = 0
    seeing_tolerance: float = 0.2
    psf_match: bool = False
    # the network auxiliary method's dc_* / nn_* parameters as sorted (key, value) pairs (aux_ml.NetworkAuxSettings)
    aux_params: tuple = ()
    # accepted for compatibility, unused here (numina's other methods)
    ignored: tuple = field(default=(), compare=False)

    @property
    def uses_mm(self) -> bool:
        return self.crmethod in ("mmcosmic", "mm_lacosmic", "mm_deepcr", "mm_conn")

    @property
    def aux_method(self) -> str | None:
        return None if self.crmethod == "mmcosmic" else self.crmethod.removeprefix("mm_")

    def to_dict(self) -> dict:
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("ignored", "aux_params")}
        return {**out, **dict(self.aux_params)}  # the dc_*/nn_* keys as numina writes them (parses back)


@dataclass(frozen=True)
class CRMasksConfig:
    """A whole parameter file: the inputs, the detector and the requirements."""

    images: tuple[str, ...]
    extnum: int | str
    gain: float
    rnoise: float
    bias: Any  # float or path of a FITS bias frame
    requirements: Requirements

    def with_requirements(self, **changes) -> "CRMasksConfig":
        return replace(self, requirements=replace(self.requirements, **changes))


# --------------------------------------------------------------------------------------------
# small validators
# --------------------------------------------------------------------------------------------
def _is_none(v) -> bool:
    return v is None or (isinstance(v, str) and v.strip().lower() in ("none", "null", ""))


def _bool(key, v) -> bool:
    if isinstance(v, bool):
        return v
    if isinstance(v, str) and v.strip().lower() in ("true", "false", "yes", "no"):
        return v.strip().lower() in ("true", "yes")
    raise ParameterError(key, f"must be True or False, got {short(v)}")


def _number(key, v, *, lo=None, hi=None, lo_open=False, integer=False):
    if isinstance(v, bool) or v is None:
        raise ParameterError(key, f"must be a number, got {short(v)}")
    if isinstance(v, str):
        try:
            v = float(v) if not integer else int(v)
        except ValueError:
            raise ParameterError(key, f"must be a number, got {short(v)}") from None
    if integer:
        if isinstance(v, float) and v.is_integer():
            v = int(v)
        if not isinstance(v, int):
            raise ParameterError(key, f"must be an integer, got {short(v)}")
    else:
        try:
            v = float(v)
        except (TypeError, ValueError):
            raise ParameterError(key, f"must be a number, got {short(v)}") from None
        if not math.isfinite(v):
            raise ParameterError(key, f"must be finite, got {short(v)}")
    if lo is not None and (v < lo or (lo_open and v == lo)):
        raise ParameterError(key, f"must be {'>' if lo_open else '>='} {lo}, got {short(v)}")
    if hi is not None and v > hi:
        raise ParameterError(key, f"must be <= {hi}, got {short(v)}")
    return v


def _choice(key, v, options):
    if not isinstance(v, str) or v.strip().lower() not in options:
        raise ParameterError(key, f"must be one of {', '.join(options)}; got {short(v)}")
    return v.strip().lower()


def _pair(key, v, *, lo_open=True):
    """A float or a list of two floats (peaks run, tails run)."""
    if isinstance(v, (list, tuple)):
        if len(v) != 2:
            raise ParameterError(key, f"must be one number or a list of two, got {short(v)}")
        return tuple(_number(key, x, lo=0.0, lo_open=lo_open) for x in v)
    x = _number(key, v, lo=0.0, lo_open=lo_open)
    return (x, x)


def _parse_literal(key, v):
    if isinstance(v, str):
        text = v.strip()
        # numina also accepts "[xmin:xmax, ymin:ymax]"
        if ":" in text:
            text = text.replace(":", ",")
        try:
            return ast.literal_eval(text)
        except (ValueError, SyntaxError):
            raise ParameterError(key, f"cannot parse {short(v)}") from None
    return v


def _int_rows(key, v, width, *, allow=None, positive=True):
    """A list of rows of ``width`` integers (FITS pixel coordinates, regions)."""
    if _is_none(v):
        return ()
    v = _parse_literal(key, v)
    if not isinstance(v, (list, tuple)):
        raise ParameterError(key, f"must be a list of [{', '.join(['v'] * width)}] rows, got {short(v)}")
    if len(v) > 0 and not isinstance(v[0], (list, tuple)):
        v = [v]
    rows = []
    for row in v:
        if not isinstance(row, (list, tuple)) or len(row) not in ((width,) if allow is None else allow):
            raise ParameterError(key, f"each entry must have {width} values, got {short(row)}")
        vals = tuple(_number(key, x, integer=True, lo=1 if positive else None) for x in row)
        rows.append(vals)
    return tuple(rows)


def _regions(key, v):
    rows = _int_rows(key, v, 4)
    for xmin, xmax, ymin, ymax in rows:
        if xmin > xmax or ymin > ymax:
            raise ParameterError(key, f"region {[xmin, xmax, ymin, ymax]} has min > max")
    return rows


# --------------------------------------------------------------------------------------------
def parse_requirements(req: Mapping | None, *, n_images: int | None = None) -> Requirements:
    """Validate a numina ``requirements`` mapping; return :class:`Requirements`."""
    if req is None:
        req = {}
    if not isinstance(req, Mapping):
        raise ParameterError("requirements", f"must be a mapping of parameters, got {type(req).__name__}")
    known = {f.name for f in fields(Requirements)} - {"ignored", "aux_params"}
    ignored, unknown, aux_params = [], [], []
    for key in req:
        if not isinstance(key, str):
            unknown.append(repr(key))
        elif key.startswith(("dc_", "nn_")):
            aux_params.append((key, req[key]))
        elif key.startswith("pc_"):
            ignored.append(key)
        elif key not in known:
            unknown.append(key)
    if unknown:
        raise ParameterError(
            clip(", ".join(sorted(unknown)), 200),
            "unknown parameter(s) in requirements (not a numina-crmasks parameter nor an extension of this tool)",
        )
    d = {k: v for k, v in req.items() if k in known}
    out: dict[str, Any] = {}

    crmethod = str(d.get("crmethod", Requirements.crmethod)).strip().lower()
    if crmethod in UNSUPPORTED_CRMETHODS:
        raise UnsupportedMethodError(
            "crmethod",
            f"{short(crmethod)} needs {UNSUPPORTED_CRMETHODS[crmethod]}, which this implementation does not "
            f"provide; use one of {', '.join(SUPPORTED_CRMETHODS)} (L.A.Cosmic via astroscrappy)",
        )
    out["crmethod"] = _choice("crmethod", crmethod, SUPPORTED_CRMETHODS)

    for key in ("use_auxmedian", "interactive", "verify_cr", "la_gain_apply", "la_sepmed", "la_verbose", "psf_match"):
        if key in d:
            out[key] = _bool(key, d[key])

    # flux factors
    ff = d.get("flux_factor", None)
    if _is_none(ff):
        out["flux_factor"] = None
    elif isinstance(ff, str) and ff.strip().lower() == "auto":
        out["flux_factor"] = "auto"
    else:
        ff = _parse_literal("flux_factor", ff)
        if isinstance(ff, (list, tuple)):
            vals = tuple(_number("flux_factor", x, lo=0.0, lo_open=True) for x in ff)
            if n_images is not None and len(vals) != n_images:
                raise ParameterError("flux_factor", f"has {len(vals)} values for {n_images} images")
            out["flux_factor"] = vals
        else:
            out["flux_factor"] = _number("flux_factor", ff, lo=0.0, lo_open=True)
    out["flux_factor_regions"] = _regions("flux_factor_regions", d.get("flux_factor_regions"))
    if "apply_flux_factor_to" in d:
        out["apply_flux_factor_to"] = _choice("apply_flux_factor_to", d["apply_flux_factor_to"], ("original", "simulated"))
    for key, (lo, hi) in INTEGER_RANGES.items():
        if key in d:
            out[key] = _number(key, d[key], integer=True, lo=lo, hi=hi)
    if "maxplots" in d:
        out["maxplots"] = _number("maxplots", d["maxplots"], integer=True)
    out["regions_to_be_skipped"] = _regions("regions_to_be_skipped", d.get("regions_to_be_skipped"))
    out["pixels_to_be_flagged_as_cr"] = _int_rows("pixels_to_be_flagged_as_cr", d.get("pixels_to_be_flagged_as_cr"), 2)
    out["pixels_to_be_ignored_as_cr"] = _int_rows("pixels_to_be_ignored_as_cr", d.get("pixels_to_be_ignored_as_cr"), 2)
    rp = _int_rows("pixels_to_be_replaced_by_local_median", d.get("pixels_to_be_replaced_by_local_median"), 4)
    for row in rp:
        if row[2] % 2 == 0 or row[3] % 2 == 0:
            raise ParameterError("pixels_to_be_replaced_by_local_median", f"window sizes must be odd, got {list(row)}")
    out["pixels_to_be_replaced_by_local_median"] = rp
    if "color_scale" in d:
        out["color_scale"] = _choice("color_scale", d["color_scale"], ("minmax", "zscale"))

    # L.A.Cosmic
    for key in ("la_sigclip", "la_sigfrac", "la_objlim"):
        if key in d:
            out[key] = _pair(key, d[key])
    if "la_satlevel" in d:
        out["la_satlevel"] = _number("la_satlevel", d["la_satlevel"], lo=0.0, lo_open=True)
    if "la_cleantype" in d:
        out["la_cleantype"] = _choice("la_cleantype", d["la_cleantype"], ("median", "medmask", "meanmask", "idw"))
    if "la_fsmode" in d:
        out["la_fsmode"] = _choice("la_fsmode", d["la_fsmode"], ("median", "convolve"))
    if "la_psfmodel" in d:
        out["la_psfmodel"] = _choice("la_psfmodel", d["la_psfmodel"], ("gauss", "moffat", "gaussx", "gaussy", "gaussxy"))
    for key in ("la_psffwhm_x", "la_psffwhm_y", "la_psfbeta"):
        if key in d:
            out[key] = _number(key, d[key], lo=0.0, lo_open=True)
    if "la_psfsize" in d:
        size = _number("la_psfsize", d["la_psfsize"], integer=True, lo=3, hi=MAX_PSFSIZE)
        if size % 2 == 0:
            raise ParameterError("la_psfsize", f"must be odd, got {size}")
        out["la_psfsize"] = size

    # M.M.Cosmic
    if "mm_cr_coincidences" in d:
        k = _number("mm_cr_coincidences", d["mm_cr_coincidences"], integer=True, lo=2)
        out["mm_cr_coincidences"] = k
    k = out.get("mm_cr_coincidences", Requirements.mm_cr_coincidences)
    if n_images is not None and k >= n_images:
        raise ParameterError(
            "mm_cr_coincidences", f"must be lower than the number of exposures ({n_images}), got {k}"
        )
    if "mm_photon_distribution" in d:
        out["mm_photon_distribution"] = _choice("mm_photon_distribution", d["mm_photon_distribution"], ("poisson", "nbinom"))
    if "mm_nbinom_shape" in d:
        out["mm_nbinom_shape"] = _number("mm_nbinom_shape", d["mm_nbinom_shape"], lo=0.0, lo_open=True)
    if "mm_synthetic" in d:
        out["mm_synthetic"] = _choice("mm_synthetic", d["mm_synthetic"], ("median", "single"))
    if "mm_hist2d_min_neighbors" in d:
        out["mm_hist2d_min_neighbors"] = _number("mm_hist2d_min_neighbors", d["mm_hist2d_min_neighbors"], integer=True, lo=0, hi=8)
    if "mm_ydiag_max" in d:
        out["mm_ydiag_max"] = _number("mm_ydiag_max", d["mm_ydiag_max"], lo=0.0)
    offs = d.get("mm_xy_offsets")
    if _is_none(offs):
        out["mm_xy_offsets"] = None
    else:
        offs = _parse_literal("mm_xy_offsets", offs)
        if not isinstance(offs, (list, tuple)) or not all(isinstance(o, (list, tuple)) and len(o) == 2 for o in offs):
            raise ParameterError("mm_xy_offsets", f"must be a list of [xoffset, yoffset] pairs, got {short(offs)}")
        vals = tuple((_number("mm_xy_offsets", o[0]), _number("mm_xy_offsets", o[1])) for o in offs)
        if n_images is not None and len(vals) != n_images:
            raise ParameterError("mm_xy_offsets", f"has {len(vals)} pairs for {n_images} images")
        out["mm_xy_offsets"] = vals
    reg = d.get("mm_crosscorr_region")
    if _is_none(reg):
        out["mm_crosscorr_region"] = None
    else:
        rows = _regions("mm_crosscorr_region", reg)
        if len(rows) != 1:
            raise ParameterError("mm_crosscorr_region", "must be one region [xmin, xmax, ymin, ymax]")
        xmin, xmax, ymin, ymax = rows[0]
        if (xmax - xmin + 1) * (ymax - ymin + 1) < 100:
            raise ParameterError("mm_crosscorr_region", "must cover at least 100 pixels")
        out["mm_crosscorr_region"] = rows[0]
    if out["mm_xy_offsets"] is not None and out["mm_crosscorr_region"] is not None:
        raise ParameterError("mm_xy_offsets", "give either mm_xy_offsets or mm_crosscorr_region, not both")
    if "mm_boundary_fit" in d:
        out["mm_boundary_fit"] = _choice("mm_boundary_fit", d["mm_boundary_fit"], ("spline", "piecewise"))
    fp = d.get("mm_fixed_points_in_boundary")
    if _is_none(fp):
        out["mm_fixed_points_in_boundary"] = ()
    else:
        fp = _parse_literal("mm_fixed_points_in_boundary", fp)
        if not isinstance(fp, (list, tuple)):
            raise ParameterError("mm_fixed_points_in_boundary", f"must be a list of [x, y(, weight)], got {short(fp)}")
        pts = []
        for p in fp:
            if not isinstance(p, (list, tuple)) or len(p) not in (2, 3):
                raise ParameterError("mm_fixed_points_in_boundary", f"each point must be [x, y] or [x, y, weight], got {short(p)}")
            w = DEFAULT_WEIGHT_FIXED_POINTS if len(p) == 2 else _number("mm_fixed_points_in_boundary", p[2], lo=0.0, lo_open=True)
            pts.append((_number("mm_fixed_points_in_boundary", p[0]), _number("mm_fixed_points_in_boundary", p[1]), w))
        out["mm_fixed_points_in_boundary"] = tuple(pts)
    if out.get("mm_boundary_fit", Requirements.mm_boundary_fit) == "piecewise" and len(out["mm_fixed_points_in_boundary"]) < 2:
        raise ParameterError("mm_fixed_points_in_boundary", "mm_boundary_fit=piecewise needs at least two fixed points")
    if "mm_weight_boundary_extension" in d:
        out["mm_weight_boundary_extension"] = _number("mm_weight_boundary_extension", d["mm_weight_boundary_extension"], lo=1.0)
    if "mm_threshold_rnoise" in d:
        out["mm_threshold_rnoise"] = _number("mm_threshold_rnoise", d["mm_threshold_rnoise"], lo=0.0)
    if "mm_minimum_max2d_rnoise" in d:
        out["mm_minimum_max2d_rnoise"] = _number("mm_minimum_max2d_rnoise", d["mm_minimum_max2d_rnoise"])
    if "mm_seed" in d:
        out["mm_seed"] = None if _is_none(d["mm_seed"]) else _number("mm_seed", d["mm_seed"], integer=True, lo=0)
    if "mm_xbinning" in d:
        out["mm_xbinning"] = _choice("mm_xbinning", d["mm_xbinning"], ("quantile", "asinh", "linear"))
    if "mm_false_per_bin" in d:
        out["mm_false_per_bin"] = _number("mm_false_per_bin", d["mm_false_per_bin"], lo=0.0, lo_open=True)
    if "mm_local_sigma" in d:
        out["mm_local_sigma"] = _number("mm_local_sigma", d["mm_local_sigma"], lo=0.0)
    if "aux_targets" in d:
        out["aux_targets"] = _choice("aux_targets", d["aux_targets"], ("median", "all"))
    if "seeing_tolerance" in d:
        out["seeing_tolerance"] = _number("seeing_tolerance", d["seeing_tolerance"], lo=0.0, lo_open=True)

    if crmethod in ("deepcr", "mm_deepcr", "conn", "mm_conn"):
        from .aux_ml import NetworkAuxSettings

        NetworkAuxSettings.from_requirements(crmethod, dict(aux_params))  # named errors now, not mid-run
    else:  # the networks' parameters are unused by the other methods
        ignored += [k for k, _ in aux_params]
        aux_params = []
    r = Requirements(**out, aux_params=tuple(sorted(aux_params, key=lambda kv: kv[0])), ignored=tuple(sorted(ignored)))
    if r.use_auxmedian and r.aux_method is None:
        raise ParameterError("use_auxmedian", f"needs an auxiliary method, but crmethod={short(r.crmethod)} has none")
    if r.use_auxmedian and r.aux_method == "conn":
        raise ParameterError("use_auxmedian", "is not available with crmethod=conn / mm_conn (Cosmic-CoNN does not "
                             "clean the image; as in numina)")
    return r


def parse_config(data: Mapping, *, base_dir: str | os.PathLike | None = None) -> CRMasksConfig:
    """Validate a whole numina-crmasks parameter mapping (the parsed YAML file).

    Relative image (and bias-frame) paths are resolved against ``base_dir``.
    """
    if not isinstance(data, Mapping):
        raise ParameterError("<file>", f"must be a mapping of parameters, got {type(data).__name__}")
    unknown = [k for k in data if k not in _TOP_LEVEL]
    if unknown:
        raise ParameterError(clip(", ".join(map(str, unknown)), 200),
                             f"unknown top-level key(s); expected {', '.join(_TOP_LEVEL)}")
    for key in ("images", "gain", "rnoise", "bias", "requirements"):
        if key not in data:
            raise ParameterError(key, "must be given")
    images = data["images"]
    if not isinstance(images, (list, tuple)) or not all(isinstance(p, str) and p for p in images):
        raise ParameterError("images", "must be a list of FITS file names")
    if len(images) < 3:
        raise ParameterError("images", f"needs at least 3 exposures, got {len(images)}")
    if len(images) > MAX_IMAGES:
        raise ParameterError("images", f"lists {len(images)} exposures; at most {MAX_IMAGES} are combined at once")
    base = Path(base_dir) if base_dir is not None else None

    def resolve(p: str) -> str:
        # numina opens paths relative to the working directory; fall back to the file's folder
        q = Path(p).expanduser()
        if base is not None and not q.is_absolute() and not q.exists():
            q = base / q
        return str(q)

    extnum = data.get("extnum", 0)
    if isinstance(extnum, str) and not extnum.strip().isdigit():
        extnum = extnum.strip()
    else:
        extnum = _number("extnum", extnum, integer=True, lo=0)
    gain = _number("gain", data["gain"], lo=0.0, lo_open=True)
    rnoise = _number("rnoise", data["rnoise"], lo=0.0)
    bias = data["bias"]
    if isinstance(bias, str) and not _looks_numeric(bias):
        bias = resolve(bias)
    else:
        bias = _number("bias", bias)
    req = parse_requirements(data["requirements"], n_images=len(images))
    return CRMasksConfig(
        images=tuple(resolve(p) for p in images),
        extnum=extnum,
        gain=gain,
        rnoise=rnoise,
        bias=bias,
        requirements=req,
    )


def _looks_numeric(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False


def load_config(path: str | os.PathLike) -> CRMasksConfig:
    """Read and validate a numina-crmasks YAML parameter file."""
    from astrid_pipeline.errors import ConfigError
    from astrid_pipeline.io.safe_yaml import load_yaml

    p = Path(path)
    if not p.exists():
        raise ParameterError("<file>", f"{p}: parameter file does not exist")
    try:
        data = load_yaml(p)
    except ConfigError as exc:
        raise ParameterError("<file>", str(exc)) from None
    try:
        return parse_config(data or {}, base_dir=p.parent)
    except ParameterError as exc:
        raise type(exc)(exc.key, f"{exc.reason} (in {p})") from None
