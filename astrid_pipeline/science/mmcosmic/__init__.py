"""M.M.Cosmic: cosmic rays that hit the same pixel in several exposures.

The median-minimum diagnostic diagram of numina-crmasks (Cardiel et al.
2026), with numina-compatible parameter files and outputs. No Dagster here.

Modules: ``params`` (numina parameter files), ``diagram`` (per-pixel
statistics), ``boundary`` (simulations and detection boundary), ``auxiliary``
(L.A.Cosmic peaks and tails), ``masks``, ``combine`` (the seven
combinations), ``registration`` (flux factors, offsets), ``pipeline`` (the
whole flow), ``outputs`` (files), ``runner`` (FITS in, files out),
``simulate`` (seeded test stacks with truth).
"""

# Names are imported on first use (PEP 562), so that reading the stacks file
# (what the Dagster definitions need at load time) does not import scipy,
# astropy and matplotlib.
_EXPORTS = {
    "MissingExtensionError": "errors",
    "NonFiniteDataError": "errors",
    "ParameterError": "errors",
    "ShapeMismatchError": "errors",
    "StackError": "errors",
    "TooFewExposuresError": "errors",
    "UnsupportedMethodError": "errors",
    "CRMasksConfig": "params",
    "Requirements": "params",
    "load_config": "params",
    "parse_config": "params",
    "parse_requirements": "params",
    "CRMasksResult": "pipeline",
    "compute_crmasks": "pipeline",
    "RunSummary": "runner",
    "read_stack": "runner",
    "run_arrays": "runner",
    "run_config": "runner",
    "SimulatedStack": "simulate",
    "simulate_stack": "simulate",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        import importlib

        module = importlib.import_module(f"{__name__}.{_EXPORTS[name]}")
        value = getattr(module, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
