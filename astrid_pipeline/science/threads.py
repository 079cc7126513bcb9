"""How many threads the numerical kernels use: torch (the cosmic-ray network) and the FFTs (ZOGY, classic).

On a small shared machine more threads are not faster: measured on 2 cores with other work running, torch
with 2 threads ran 1.5-10x slower than with 1 (its threads spin and wait for each other when a core is taken),
and ``scipy.fft`` with 2 workers was no faster than with 1 (``benchmarks/region.py`` prints both). On an idle
machine 2 threads win. So the default (``0`` = automatic) takes the cores that are free *now*: the CPU count
minus the load average of the other processes (this process's own running thread excluded), at least 1;
a positive setting, or the environment, fixes the count.

The same holds for OpenMP kernels (astroscrappy's L.A.Cosmic in M.M.Cosmic: 2.6 s with 1 thread, 3.7 s with 2
on the loaded 2-core machine): :func:`openmp_limit` sets the thread count of every OpenMP runtime loaded in the
process for the duration of a block (as ``threadpoolctl`` does, without the dependency).

Precedence: :func:`configure` (from :class:`ThreadSettings`, e.g. the sky branch's settings) > the environment
(``ASTRID_TORCH_THREADS``, ``ASTRID_FFT_WORKERS``, ``ASTRID_OPENMP_THREADS``; ``ASTRID_THREADS`` for all) >
automatic.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field


@dataclass
class ThreadSettings:
    """Thread counts of the numerical kernels (0 = automatic: the cores free now)."""

    torch: int = field(default=0, metadata={"description": "threads of the cosmic-ray network (torch); 0 = the "
                                                           "cores that are free now (at least 1)"})
    fft: int = field(default=0, metadata={"description": "workers of scipy.fft in ZOGY and the classic difference; "
                                                         "0 = the cores that are free now (at least 1)"})
    openmp: int = field(default=0, metadata={"description": "threads of OpenMP kernels (astroscrappy's L.A.Cosmic); "
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


def openmp_threads() -> int:
    """Threads for OpenMP kernels such as astroscrappy (see the module docstring)."""
    return int(_configured.openmp) or _from_env("ASTRID_OPENMP_THREADS", "ASTRID_THREADS") or free_cores()


def _openmp_runtimes() -> list:
    """ctypes handles of the OpenMP runtimes (libgomp, libomp, libiomp) mapped into this process (Linux)."""
    import ctypes

    paths = set()
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                p = line.rsplit(" ", 1)[-1].strip()
                name = os.path.basename(p)
                if name.startswith(("libgomp", "libomp", "libiomp")) and ".so" in name:
                    paths.add(p)
    except OSError:  # not Linux: nothing to limit
        return []
    libs = []
    for p in sorted(paths):
        try:
            lib = ctypes.CDLL(p, mode=os.RTLD_NOLOAD | os.RTLD_GLOBAL) if hasattr(os, "RTLD_NOLOAD") else ctypes.CDLL(p)
            lib.omp_get_max_threads.restype = ctypes.c_int
            lib.omp_set_num_threads.argtypes = [ctypes.c_int]
            libs.append(lib)
        except (OSError, AttributeError):
            continue
    return libs


@contextlib.contextmanager
def openmp_limit(n: int | None = None):
    """Within the block, OpenMP parallel regions started by this thread use ``n`` threads (default
    :func:`openmp_threads`); the previous counts are restored afterwards. Import the library first (its
    runtime must be loaded to be limited)."""
    n = int(n) if n else openmp_threads()
    saved = []
    for lib in _openmp_runtimes():
        try:
            saved.append((lib, int(lib.omp_get_max_threads())))
            lib.omp_set_num_threads(n)
        except (OSError, AttributeError):
            continue
    try:
        yield n
    finally:
        for lib, before in saved:
            with contextlib.suppress(OSError, AttributeError):
                lib.omp_set_num_threads(before)
