"""Run the sky steps of one region, in table order (plain Python; the Dagster assets and the CLI use it).

For each region, :func:`run_region`:

- takes a per-region lock (``<data root>/.locks/sky/<region>.lock``), so two runs of one region cannot
  interleave their products: the second fails at once with :class:`RegionBusyError`;
- sweeps temporary files that a killed writer left beside the region's products;
- runs the selected steps in :data:`~astrid_pipeline.sky.table.SKY_STEPS` order, timing each one;
- after a step succeeds, removes the region's products of every *later* step, so a re-run that fails
  part-way never leaves the previous run's catalog and triplets beside new inputs as if they belonged
  together;
- evaluates each step's checks; a failed *blocking* check (or a step that raises) stops the region's later
  steps, reported as skipped with the reason, while other regions carry on.

It yields :class:`RegionEvent` objects as things happen, so a caller records each one at once.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from astrid_pipeline.errors import AstridError
from astrid_pipeline.sky.settings import SkySettings
from astrid_pipeline.sky.products import product_paths
from astrid_pipeline.sky.table import SKY_STEPS, CheckOutcome, Step, StepInputs

log = logging.getLogger(__name__)


class RegionBusyError(AstridError):
    """Another process holds the region's lock (two runs of one region at once)."""


@dataclass
class RegionEvent:
    kind: str  # "materialized", "check", "check_skipped", "failed", "skipped"
    region: str
    step: Step
    result: Any = None  # StepResult (materialized)
    check: Any = None  # Check (check, check_skipped)
    outcome: CheckOutcome | None = None
    error: BaseException | None = None
    message: str = ""
    seconds: float = 0.0


@dataclass
class RegionSummary:
    region: str
    completed: list[str] = field(default_factory=list)
    failed_step: str | None = None
    failed_checks: list[str] = field(default_factory=list)
    skipped_steps: list[str] = field(default_factory=list)
    error: str = ""
    science_s: float = 0.0

    @property
    def ok(self) -> bool:
        return self.failed_step is None and not self.failed_checks


def _remove(paths: Sequence[Path]) -> list[Path]:
    gone = []
    for p in paths:
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
            gone.append(p)
        elif p.exists():
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
                gone.append(p)
    return gone


def invalidate_after(layout, region: str, step: Step) -> list[Path]:
    """Remove the region's products of every step after ``step`` (they no longer match their inputs)."""
    i = SKY_STEPS.index(step)
    paths = [p for later in SKY_STEPS[i + 1:] for key in later.asset_keys for p in product_paths(layout, region, key)]
    return _remove(paths)


@contextlib.contextmanager
def region_lock(layout, region: str, owner: str = "") -> Iterator[Path]:
    """Exclusive, non-blocking lock of one region for this process; :class:`RegionBusyError` if held."""
    import fcntl

    from astrid_pipeline.layout import safe_key

    path = layout.root / ".locks" / "sky" / f"{safe_key(region)}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = ""
            with contextlib.suppress(OSError, ValueError):
                holder = Path(path).read_text()[:300]
            raise RegionBusyError(f"region {region!r} is being processed by another run ({holder or 'unknown holder'});"
                                  " wait for it to finish or cancel it") from None
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "owner": owner, "since": time.strftime("%Y-%m-%dT%H:%M:%S")}).encode())
        yield path
    finally:
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def sweep_region(layout, region: str) -> list[Path]:
    """Remove temporary files that killed writers left beside this region's products."""
    from astrid_pipeline.io.atomic import sweep_orphan_temporaries

    folders = {p.parent if not p.is_dir() else p for s in SKY_STEPS for k in s.asset_keys
               for p in product_paths(layout, region, k)}
    removed = []
    for d in folders:
        removed += sweep_orphan_temporaries(d)
    return removed


def _error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:2000]


def run_region(layout, region, settings: SkySettings, steps: Sequence[Step], *,
               fetch_pair: Callable[[], Any] | None = None, owner: str = "",
               summary: RegionSummary | None = None) -> Iterator[RegionEvent]:
    """Run ``steps`` (a subset of SKY_STEPS, any order; run in table order) for one region.

    ``region`` is a :class:`~astrid_pipeline.regions.Region`; ``fetch_pair()`` returns its
    :class:`~astrid_pipeline.archives.base.ArchivePair` (needed by the acquisition step only).
    Fill ``summary`` (if given) as the events go.
    """
    from astrid_pipeline.science.threads import configure

    configure(settings.threads)
    summary = summary if summary is not None else RegionSummary(region.name)
    ordered = [s for s in SKY_STEPS if s in steps]
    key = region.name
    try:
        lock = region_lock(layout, key, owner)
        lock.__enter__()
    except RegionBusyError as exc:  # reported like a failure of the first step, so a check says so
        summary.failed_step, summary.error = ordered[0].name if ordered else "lock", _error_text(exc)
        if ordered:
            yield RegionEvent("failed", key, ordered[0], error=exc, message=summary.error)
            for check in ordered[0].checks:
                summary.failed_checks.append(f"{check.asset}:{check.name}")
                yield RegionEvent("check", key, ordered[0], check=check,
                                  outcome=CheckOutcome(False, {"error": summary.error}, "region is locked"))
        return
    try:
        yield from _run_steps(layout, region, settings, ordered, fetch_pair, summary)
    finally:
        lock.__exit__(None, None, None)


def _run_steps(layout, region, settings, ordered, fetch_pair, summary) -> Iterator[RegionEvent]:
    key = region.name
    for p in sweep_region(layout, key):
        log.warning("removed %s, left by a killed writer", p)
    blocked = ""
    for step in ordered:
        if blocked:
            summary.skipped_steps.append(step.name)
            yield RegionEvent("skipped", key, step, message=blocked)
            continue
        inputs = StepInputs(layout=layout, region=region, settings=settings, fetch_pair=fetch_pair, log=log)
        t0 = time.perf_counter()
        try:
            result = step.run(inputs)
        except Exception as exc:  # one region's failure must not stop the others
            dt = time.perf_counter() - t0
            summary.science_s += dt
            summary.failed_step, summary.error = step.name, _error_text(exc)
            if not isinstance(exc, AstridError):
                log.error("region %s, step %s: unexpected error\n%s", key, step.name, traceback.format_exc())
            blocked = f"step {step.name} failed: {summary.error}"
            yield RegionEvent("failed", key, step, error=exc, message=summary.error, seconds=dt)
            for check in step.checks:
                summary.failed_checks.append(f"{check.asset}:{check.name}")
                yield RegionEvent("check", key, step, check=check,
                                  outcome=CheckOutcome(False, {"error": summary.error},
                                                       f"step {step.name} failed"))
            continue
        dt = time.perf_counter() - t0
        summary.science_s += dt
        invalidate_after(layout, key, step)
        summary.completed.append(step.name)
        yield RegionEvent("materialized", key, step, result=result, seconds=dt)
        for check in step.checks:
            try:
                outcome = check.evaluate(result, settings)
            except Exception as exc:  # a check that cannot be evaluated has failed
                outcome = CheckOutcome(False, {"error": _error_text(exc)}, "check could not be evaluated")
            if outcome is None:
                yield RegionEvent("check_skipped", key, step, check=check,
                                  message=f"{check.name} does not apply to this region")
                continue
            if not outcome.passed:
                summary.failed_checks.append(f"{check.asset}:{check.name}")
                if check.blocking:
                    blocked = f"blocking check {check.asset}:{check.name} failed"
            yield RegionEvent("check", key, step, check=check, outcome=outcome)


class StepFailedError(AstridError):
    """A step of :func:`run_pair` failed (the message names the step and the original error)."""


def run_pair(layout, region: str, pair, settings: SkySettings | None = None, steps: Sequence[Step] | None = None,
             lock: bool = True) -> dict[str, Any]:
    """Every sky step for one archive pair, in table order, outside Dagster (notebooks, benchmarks, tests).

    Returns ``{step name: StepResult}``; a failing step raises :class:`StepFailedError` (``__cause__`` is the
    original error) and the region's later steps do not run. ``region`` is a key or a
    :class:`~astrid_pipeline.regions.Region`.
    """
    from astrid_pipeline.regions import Region

    reg = region if isinstance(region, Region) else Region(str(region), float("nan"), float("nan"))
    results: dict[str, Any] = {}
    for ev in run_region(layout, reg, settings or SkySettings(), steps or SKY_STEPS, fetch_pair=lambda: pair,
                         owner="run_pair"):
        if ev.kind == "materialized":
            results[ev.step.name] = ev.result
        elif ev.kind == "failed":
            raise StepFailedError(f"region {reg.name}: step {ev.step.name} failed: {ev.message}") from ev.error
    return results
