"""The web UI in a real browser: Debian's chromium driven by Playwright (system binary, nothing installed
at run time). Starts dagster-webserver on a loopback port, checks the asset graph, launches one region's
materialization from the UI and waits for the run to succeed; saves screenshots.

Skips (with the reason) only when chromium or the playwright package cannot be found; CI installs
chromium with ``scripts/setup_browser.sh``. ``ASTRID_CHROMIUM`` names another binary;
``ASTRID_SCREENSHOTS`` keeps the screenshots in that folder.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parents[2]
UI_DEFS = Path(__file__).with_name("ui_definitions.py")
LOCATION = UI_DEFS.name


def _chromium() -> str | None:
    for cand in (os.environ.get("ASTRID_CHROMIUM"), "chromium", "chromium-browser", "google-chrome"):
        if cand and shutil.which(cand):
            return shutil.which(cand)
    return None


CHROMIUM = _chromium()
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary on PATH (run scripts/setup_browser.sh, "
                                                "or set ASTRID_CHROMIUM)"),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _graphql(base: str, query: str, variables: dict | None = None) -> dict:
    req = urllib.request.Request(base + "/graphql", data=json.dumps({"query": query, "variables": variables or {}}).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


@pytest.fixture
def webserver(tmp_path):
    """dagster-webserver in its own process group on 127.0.0.1; telemetry off; stopped for sure."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    # runs launched from the UI start at once (no daemon in the test): the default run coordinator
    (home / "dagster.yaml").write_text(
        "telemetry:\n  enabled: false\n"
        "run_coordinator:\n  module: dagster._core.run_coordinator\n  class: DefaultRunCoordinator\n")
    env = {**os.environ, "DAGSTER_HOME": str(home), "DAGSTER_DISABLE_TELEMETRY": "1",
           "ASTRID_DATA_ROOT": str(tmp_path / "data")}
    env.pop("ASTRID_REGION_CATALOG", None)
    from dagster import DagsterInstance

    with DagsterInstance.from_config(str(home)) as instance:
        instance.add_dynamic_partitions("sky_regions", ["COSMOS", "M101"])
    port = _free_port()
    exe = Path(sys.executable).with_name("dagster-webserver")
    log = open(tmp_path / "webserver.log", "wb")
    proc = subprocess.Popen([str(exe), "-h", "127.0.0.1", "-p", str(port), "-f", str(UI_DEFS),
                             "--working-directory", str(PROJECT)],
                            env=env, cwd=PROJECT, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True,  # its own process group: we stop it and its code server
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            if proc.poll() is not None:
                pytest.fail(f"webserver exited with {proc.returncode}: {(tmp_path / 'webserver.log').read_text()[-2000:]}")
            try:
                urllib.request.urlopen(base + "/server_info", timeout=2).read()
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail("webserver did not answer within 90 s")
                time.sleep(0.5)
        # the code location must load (an import error would otherwise show as an empty graph)
        while True:
            ws = _graphql(base, "{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus "
                                "locationOrLoadError { __typename ... on PythonError { message } } } } } }")
            entry = ws["data"]["workspaceOrError"]["locationEntries"][0]
            if entry["loadStatus"] == "LOADED":
                assert entry["locationOrLoadError"]["__typename"] == "RepositoryLocation", entry
                break
            if time.monotonic() > deadline:
                pytest.fail(f"code location did not load: {entry}")
            time.sleep(0.5)
        assert _graphql(base, "mutation { setNuxSeen }")["data"]["setNuxSeen"] is True  # no first-visit dialog
        yield base, tmp_path
    finally:
        for sig, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, 10)):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                proc.wait(timeout=wait)
                break
            except subprocess.TimeoutExpired:
                continue
        log.close()


RUNS = ('{ runsOrError(filter: {pipelineName: "sky_branch_job"}) { ... on Runs { results { runId status '
        'tags { key value } } } } }')


def _settle(page, timeout_ms: int = 20_000):
    """Give the page's scripts time to fill in lazy panels before a screenshot (not an assertion)."""
    try:
        page.wait_for_function("() => !document.body.innerText.includes('Loading')", timeout=timeout_ms)
    except Exception:  # a panel still loading only makes the screenshot less informative
        pass


def _run_status(base: str, run_id: str) -> str:
    q = "query($id: ID!) { runOrError(runId: $id) { ... on Run { status } } }"
    return _graphql(base, q, {"id": run_id})["data"]["runOrError"]["status"]


def test_asset_graph_and_a_region_materialized_from_the_ui(webserver):
    playwright = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed (dev extra)")
    base, tmp_path = webserver
    shots = Path(os.environ.get("ASTRID_SCREENSHOTS") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                    args=["--no-sandbox", "--disable-dev-shm-usage"])
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            page.set_default_timeout(60_000)

            # the asset graph of a group: its assets are drawn as nodes
            page.goto(f"{base}/locations/{LOCATION}/asset-groups/sky_candidates", wait_until="networkidle")
            for name in ("candidate_catalog", "cutout_triplets"):
                page.get_by_text(name, exact=True).first.wait_for()
            # kinds are drawn under each node
            page.get_by_text("hdf5", exact=True).first.wait_for()
            page.get_by_text("Parquet", exact=True).first.wait_for()
            _settle(page)
            page.screenshot(path=str(shots / "asset_graph.png"))

            # the sky job: launch one region from the "Materialize all" dialog
            page.goto(f"{base}/locations/{LOCATION}/jobs/sky_branch_job", wait_until="networkidle")
            page.get_by_text("sky_acquisition", exact=True).first.wait_for()
            page.get_by_role("button", name="Materialize all").first.click()
            dialog = page.get_by_role("dialog")
            dialog.get_by_text("Select a partition or create one").click()
            page.keyboard.type("COSMOS")
            page.get_by_role("menuitem", name="COSMOS").first.click()
            launch = page.get_by_role("button", name="Launch 1 run")
            launch.wait_for()
            page.screenshot(path=str(shots / "launch_dialog.png"))
            launch.click()
            # the launched run, as the instance records it (tagged with the partition chosen in the UI)
            deadline = time.monotonic() + 60
            runs = []
            while not runs and time.monotonic() < deadline:
                time.sleep(0.5)
                runs = _graphql(base, RUNS)["data"]["runsOrError"]["results"]
            assert len(runs) == 1, f"expected one run launched from the UI, got {runs}"
            tags = {t["key"]: t["value"] for t in runs[0]["tags"]}
            assert tags.get("dagster/partition") == "COSMOS", tags
            run_id = runs[0]["runId"]
            page.goto(f"{base}/runs/{run_id}", wait_until="networkidle")
            deadline = time.monotonic() + 150
            status = _run_status(base, run_id)
            while status not in ("SUCCESS", "FAILURE", "CANCELED") and time.monotonic() < deadline:
                time.sleep(1)
                status = _run_status(base, run_id)
            page.reload(wait_until="networkidle")
            page.get_by_text("Success").first.wait_for()
            _settle(page)
            page.screenshot(path=str(shots / "run.png"))
        finally:
            browser.close()
    assert status == "SUCCESS", f"run {run_id} ended {status}"
    data = tmp_path / "data"
    assert (data / "catalogs" / "candidates" / "region=COSMOS" / "part-0.parquet").exists()
    assert (data / "sky" / "triplets" / "COSMOS.h5").exists()
    q = '{ assetNodeOrError(assetKey: {path: ["candidate_catalog"]}) { ... on AssetNode { partitionStats { numMaterialized } } } }'
    assert _graphql(base, q)["data"]["assetNodeOrError"]["partitionStats"]["numMaterialized"] == 1
    assert (shots / "run.png").stat().st_size > 0
