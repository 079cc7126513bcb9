"""The hostile corpus of issue #14, counted: every case in its own process, with a timeout and a memory cap.

Runs every row of ``astrid_pipeline_tests/hostile/corpus.py`` (bad YAML at every YAML reader, FITS and HDF5
headers that declare huge or absent data, meaningless WCS and ramps, bad parameters and names, every installed
CLI with bad input and a broken environment, killed writers, dead runs, the catalog sensor) and the archive
HTTP cases of ``astrid_pipeline_tests/archives/test_hostile_http.py`` (bounded downloads, deadlines, redirects,
secrets; items 2 and 7), and classifies each outcome:

* ``named_errors``: a pipeline error (``astrid_pipeline.errors``) whose message names the file or parameter
  (CLIs: a non-zero exit with exactly one ``<prog>: error: ...`` line that names it);
* ``accepted_ok``: a valid input accepted (the controls of the corpus);
* ``unclear_errors``: any other exception, or a message that does not say which file or parameter;
* ``silently_accepted``: a bad input that raised nothing (CLIs: exit status 0);
* ``hangs``: past the per-case timeout, or out of the memory cap (or killed by a signal);
* ``stale_or_partial``: a temporary or stale product left where a reader looks;
* ``cli_tracebacks``: a CLI that printed a Python traceback (or let an exception escape ``main``).

Each corpus case runs in a forked child (``--timeout`` s, address space capped at ``--memory-gb`` GiB above
what the parent already maps) in its own temporary folder; the folders are removed at the end, also when a
child was killed. The HTTP cases run as one pytest process (``--http-timeout`` s in all: a hang there counts
the cases not reported as hangs). There is no peer to compare with: the floor is 0 for every count but the
first three. Timings are wall-clock on a shared machine (noisy).

The last line printed is one JSON object with the counts.

Usage: python benchmarks/hostile.py [--timeout 60] [--memory-gb 3] [--http-timeout 600] [--only SUBSTRING]
       [--no-http] [--verbose]
"""

from __future__ import annotations

import argparse
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("OMP_NUM_THREADS", "1")

KEYS = ("cases", "named_errors", "accepted_ok", "unclear_errors", "silently_accepted", "hangs", "stale_or_partial",
        "cli_tracebacks")


def _preload() -> None:
    """Import what the cases use once, before forking, so each child starts at once."""
    import importlib

    for name in ("numpy", "h5py", "astropy.io.fits", "astropy.wcs", "astrid_pipeline.cli",
                 "astrid_pipeline.cli_crmasks", "astrid_pipeline.cli_ramps", "astrid_pipeline.io.fits_io", "astrid_pipeline.regions",
                 "astrid_pipeline.science.mmcosmic", "astrid_pipeline.science.ramps.readers"):
        importlib.import_module(name)
    importlib.import_module("astrid_pipeline.cli_ramps")._parser()  # the flags come from the ML settings classes


def _mapped_bytes() -> int:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _child(case, folder: Path, cap: int, write_fd: int) -> None:
    """Runs in the forked child: one case, its outcome as one JSON line on ``write_fd``."""
    import resource

    from astrid_pipeline_tests.hostile.corpus import Refused, evaluate

    if cap > 0:
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    t0 = time.perf_counter()
    try:
        out = evaluate(case, folder)
        kind, detail = out.kind, out.detail
        if isinstance(out.error, MemoryError):
            kind, detail = "hangs", "out of memory: " + detail
        expected = "accepted_ok" if case.error is None else "named_errors"
        mismatch = kind != expected or (case.error not in (None, Refused) and out.error is not None
                                        and type(out.error) is not case.error)
        if mismatch and kind == expected:
            detail = f"expected {case.error.__name__}, got {type(out.error).__name__}: {detail}"
    except MemoryError:
        kind, detail, mismatch = "hangs", "out of memory", True
    except BaseException as exc:  # noqa: BLE001 - the harness itself failed on this case
        kind, detail, mismatch = "unclear_errors", f"harness: {type(exc).__name__}: {str(exc)[:300]}", True
    payload = json.dumps({"kind": kind, "detail": detail[:600], "mismatch": bool(mismatch),
                          "seconds": time.perf_counter() - t0})
    os.write(write_fd, payload.encode() + b"\n")


def run_case(case, root: Path, timeout: float, cap: int) -> dict:
    folder = Path(tempfile.mkdtemp(prefix="case-", dir=root))
    r, w = os.pipe()
    t0 = time.perf_counter()
    pid = os.fork()
    if pid == 0:  # child
        os.close(r)
        code = 0
        try:
            os.setpgid(0, 0)  # its own process group: a timeout kills what it started too
            _child(case, folder / "case", cap, w)
        except BaseException:  # noqa: BLE001
            code = 1
        finally:
            os._exit(code)
    os.close(w)
    data = b""
    deadline = t0 + timeout
    status = None
    while True:
        left = deadline - time.perf_counter()
        if left <= 0:
            break
        ready, _, _ = select.select([r], [], [], min(left, 0.5))
        eof = False
        if ready:
            chunk = os.read(r, 65536)
            eof = not chunk
            data += chunk
        done, st = os.waitpid(pid, os.WNOHANG)
        if eof and not done:  # the pipe closed: the child is exiting
            while not done and time.perf_counter() < deadline:
                time.sleep(0.01)
                done, st = os.waitpid(pid, os.WNOHANG)
            if not done:
                break
        if done:
            status = st
            while True:
                chunk = os.read(r, 65536)
                if not chunk:
                    break
                data += chunk
            break
    if status is None:  # still running: a hang
        for target in (-pid, pid):
            try:
                os.kill(target, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        os.waitpid(pid, 0)
    os.close(r)
    shutil.rmtree(folder, ignore_errors=True)
    seconds = time.perf_counter() - t0
    if data.strip():
        out = json.loads(data.decode().strip().splitlines()[-1])
        out["seconds"] = seconds
        return out
    if status is None:
        return {"kind": "hangs", "detail": f"no outcome after {timeout:.0f} s (killed)", "mismatch": True,
                "seconds": seconds}
    why = (f"killed by signal {os.WTERMSIG(status)}" if os.WIFSIGNALED(status)
           else f"exited {os.WEXITSTATUS(status)} without an outcome")
    return {"kind": "hangs", "detail": f"{why} (out of memory?)", "mismatch": True, "seconds": seconds}


# ----------------------------------------------------------------------------- the archive HTTP cases
def _raises(test_fn) -> bool:
    import inspect

    try:
        return "pytest.raises" in inspect.getsource(test_fn)
    except (OSError, TypeError):
        return False


def http_cases(timeout: float, root: Path) -> list[dict]:
    """The HTTP corpus as one pytest run; each test item classified from its result and what it asserts."""
    import xml.etree.ElementTree as ET

    from astrid_pipeline_tests.archives import test_hostile_http as mod

    expected = {}
    for case in list(mod.DOWNLOAD_CASES):
        expected[f"test_hostile_download[{case.id}]"] = case.error is not None
    for case in mod._gz_cases():
        expected[f"test_gzipped_fits_downloads[{case.id}]"] = case.error is not None
    report = root / "http.xml"
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--junitxml", str(report),
           "--basetemp", str(root / "http-tmp"),
           str(ROOT / "astrid_pipeline_tests" / "archives" / "test_hostile_http.py")]
    t0 = time.perf_counter()
    try:
        subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
        hung = False
    except subprocess.TimeoutExpired:
        hung = True
    seconds = time.perf_counter() - t0
    rows = []
    if report.exists():
        for tc in ET.parse(report).getroot().iter("testcase"):
            name = tc.get("name", "")
            if tc.find("skipped") is not None:
                continue  # needs the real data folder: not counted
            failed = tc.find("failure") is not None or tc.find("error") is not None
            base = name.split("[", 1)[0]
            refuses = expected.get(name, _raises(getattr(mod, base, None)) if not name.startswith(
                "test_strip_secrets") else False)
            if failed:
                text = ((tc.find("failure") if tc.find("failure") is not None else tc.find("error")).get("message")
                        or "")[:300]
                kind = "silently_accepted" if "DID NOT RAISE" in text else "unclear_errors"
            else:
                kind, text = ("named_errors" if refuses else "accepted_ok"), ""
            rows.append({"id": f"http::{name}", "kind": kind, "detail": text, "mismatch": failed,
                         "seconds": float(tc.get("time", 0.0))})
    if hung:
        n = len(expected) - sum(1 for r in rows if r["id"].split("::", 1)[1] in expected)
        rows += [{"id": f"http::unreported-{i}", "kind": "hangs", "detail": f"pytest past {timeout:.0f} s",
                  "mismatch": True, "seconds": seconds} for i in range(max(n, 1))]
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--timeout", type=float, default=60.0, help="seconds per corpus case (default 60)")
    ap.add_argument("--memory-gb", type=float, default=3.0, help="address space per case above the parent's (GiB)")
    ap.add_argument("--http-timeout", type=float, default=600.0, help="seconds for all the HTTP cases (default 600)")
    ap.add_argument("--only", default="", help="run only the corpus cases whose id contains this text")
    ap.add_argument("--no-http", action="store_true", help="skip the archive HTTP cases")
    ap.add_argument("--verbose", action="store_true", help="one line per case")
    args = ap.parse_args(argv)

    _preload()
    from astrid_pipeline_tests.hostile.corpus import all_cases

    cases = [c for c in all_cases() if args.only in c.id]
    cap = _mapped_bytes() + int(args.memory_gb * (1 << 30)) if args.memory_gb > 0 else 0
    root = Path(tempfile.mkdtemp(prefix="astrid-hostile-"))
    rows = []
    t0 = time.perf_counter()
    try:
        for case in cases:
            out = run_case(case, root, args.timeout, cap)
            rows.append({"id": case.id, "item": case.item, **out})
            if args.verbose:
                print(f"{out['kind']:18s} {out['seconds']:6.2f} s  {case.id}", flush=True)
        corpus_s = time.perf_counter() - t0
        http = [] if args.no_http else http_cases(args.http_timeout, root)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    rows += [{**r, "item": 2} for r in http]
    total_s = time.perf_counter() - t0

    counts = Counter(r["kind"] for r in rows)
    by_item = Counter(r["item"] for r in rows)
    print(f"corpus: {len(cases)} cases in {corpus_s:.1f} s (each in its own process, timeout {args.timeout:.0f} s, "
          f"cap {args.memory_gb:g} GiB); archive HTTP: {len(http)} cases; total {total_s:.1f} s wall (shared machine)")
    print("cases per issue item: " + ", ".join(f"{k}: {by_item[k]}" for k in sorted(by_item)))
    slow = sorted(rows, key=lambda r: -r["seconds"])[:5]
    print("slowest: " + ", ".join(f"{r['id']} {r['seconds']:.1f} s" for r in slow))
    bad = [r for r in rows if r["kind"] not in ("named_errors", "accepted_ok") or r.get("mismatch")]
    for r in bad:
        print(f"  {r['kind']}{' (not the expected outcome)' if r.get('mismatch') else ''}: {r['id']}: {r['detail']}")
    mismatches = sum(1 for r in rows if r.get("mismatch"))
    print(f"outcomes not as the corpus expects: {mismatches} (floor 0); "
          f"named_errors + accepted_ok = {counts['named_errors'] + counts['accepted_ok']} of {len(rows)}")
    result = {"cases": len(rows), **{k: counts.get(k, 0) for k in KEYS[1:]}}
    print(json.dumps(result))
    return 0 if not bad else 1


if __name__ == "__main__":
    sys.exit(main())
