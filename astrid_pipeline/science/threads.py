"""How many threads the numerical kernels use: torch (the cosmic-ray network) and the FFTs (ZOGY, classic).

On a small shared machine more threads are not faster: measured on 2 cores with other work running, torch
with 2 threads ran 1.5-10x slower than with 1 (its threads spin and wait for each other when a core is taken),
and ``scipy.fft`` with 2 workers was no faster than with 1 (``benchmarks/region.py`` prints both). On an idle
machine 2 threads win. So the default (``0`` = automatic) takes the cores that are free *now*: the CPU count
minus the load average of the other processes (this process's own running thread excluded), at least 1;
a positive setting, or the environment, fixes the count.

Precedence: :func:`configure` (from :class:`ThreadSettings`, e.g. the sky branch's settings) > the environment
(``ASTRID_TORCH_THREADS``, ``ASTRID_FFT_WORKERS``; ``ASTRID_THREADS`` for both) > automatic.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field


@dataclass
class ThreadSettings:
    """Thread counts of the numerical kernels (0 = automatic: the cores free now)."""

    torch: int = field(default=0, metadata={"description": "threads of the cosmic-ray network (torch); 0 = the "
                                                           "cores that are free now (at least 1)"})
    fft: int = field(default=0, metadata={"description": "workers of scipy.fft in ZOGY and the classic difference; "
                                                         "0 = the cores that are free now (at least 1)"})


_configured = ThreadSettings()


def configure(settings: ThreadSettings | None) -> ThreadSettings:
    """Fix the thread counts for this process (``None`` or zeros: back to the environment / automatic)."""
    global _configured
    _configured = settings if settings is not None else ThreadSettings()
    return _configured


def cpu_count() -> int:
    """CPUs this process may run on (the affinity mask, not the machine's total)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return max(1, os.cpu_count() or 1)


def free_cores() -> int:
    """Cores not taken by other processes now: CPUs - (1-minute load average - this process's thread), >= 1."""
    n = cpu_count()
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):
        return n
    return int(min(n, max(1, round(n - max(0.0, load - 1.0)))))


def _from_env(*names: str) -> int:
    for name in names:
        v = os.environ.get(name, "").strip()
        if v:
            try:
                n = int(v)
            except ValueError:
                continue
            if n > 0:
                return n
    return 0


def torch_threads() -> int:
    """Threads for torch inference (see the module docstring)."""
    return int(_configured.torch) or _from_env("ASTRID_TORCH_THREADS", "ASTRID_THREADS") or free_cores()


def fft_workers() -> int:
    """Workers for ``scipy.fft`` (see the module docstring)."""
    return int(_configured.fft) or _from_env("ASTRID_FFT_WORKERS", "ASTRID_THREADS") or free_cores()
