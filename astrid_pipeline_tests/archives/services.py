"""Loopback stand-ins for the PS1 image service and SkyView, and astroquery's recorded MAST responses.

The PS1 and SkyView servers answer the same endpoints, with the same formats,
as the real services; SkyView's pages are the ones astroquery's wheel
records (``astroquery/skyview/tests/data``). Image bodies are real FITS from
``../shared/realdata``.
"""

from __future__ import annotations

import io
import json
import os
import re
from pathlib import Path

import numpy as np
from astropy.io import fits

from astrid_pipeline.archives.ps1 import asinh_scale_ps1
from astrid_pipeline_tests.archives.conftest import Answer

SKYVIEW_FITS = "/tempspace/fits/skv6724208473423_1.fits"  # the link in astroquery's recorded results page
PS1_STACK = "/rings.v3.skycell/1784/059/rings.v3.skycell.1784.059.stk.r.unconv.fits"


def astroquery_data(service: str) -> Path:
    import astroquery

    return Path(astroquery.__file__).parent / service / "tests" / "data"


def ps1_body(linear_fits: Path, boffset: float, bsoften: float) -> bytes:
    """A PS1-style cutout made from a real image: pixels asinh-scaled, BOFFSET/BSOFTEN in the header."""
    with fits.open(linear_fits) as h:
        data = np.asarray(h[0].data, dtype=np.float64)
        hdr = h[0].header.copy()
    hdr["BOFFSET"] = (boffset, "PS1 asinh offset")
    hdr["BSOFTEN"] = (bsoften, "PS1 asinh softening")
    buf = io.BytesIO()
    fits.PrimaryHDU(asinh_scale_ps1(data, boffset, bsoften).astype(np.float32), hdr).writeto(buf)
    return buf.getvalue()


def ps1_table(filters="r", ra=318.108, dec=-66.016) -> bytes:
    lines = ["projcell subcell ra dec filter mjd type filename shortname badflag"]
    for f in filters:
        name = PS1_STACK.replace(".stk.r.", f".stk.{f}.")
        lines.append(f"1784 059 {ra:.6f} {dec:.6f} {f} 0 stack {name} {Path(name).name} 0")
    return ("\n".join(lines) + "\n").encode()


def install_ps1(loop, body: bytes, filters="grizy"):
    loop.routes["/cgi-bin/ps1filenames.py"] = lambda q: Answer(200, ps1_table(q.get("filters", filters)),
                                                               {"Content-Type": "text/plain"})

    def cutout(q):
        if q.get("format") != "fits":
            return Answer(400, b"only FITS in tests")
        return Answer(200, body, {"Content-Type": "application/fits"})

    loop.routes["/cgi-bin/fitscut.cgi"] = cutout
    return loop.url + "/cgi-bin"


def install_skyview(loop, body: bytes):
    d = astroquery_data("skyview")
    page = (d / "query_page.html").read_bytes()
    results = (d / "results.html").read_bytes()
    loop.routes["/current/cgi/basicform.pl"] = [Answer(200, page, {"Content-Type": "text/html"})]
    loop.routes["/current/cgi/runquery.pl"] = [Answer(200, results, {"Content-Type": "text/html"})]
    loop.routes[SKYVIEW_FITS] = [Answer(200, body, {"Content-Type": "application/fits"})]
    return loop.url + "/current/cgi/basicform.pl"


# ---------------------------------------------------------------------- MAST (astroquery's recorded answers)
MAST_FILES = {"Mast.Caom.Filtered.Position": "advSearchPos.json", "Mast.Caom.Filtered": "advSearch.json",
              "Mast.Caom.Products": "products.json", "columnsconfig": "columnsconfig.json"}


def patch_mast(monkeypatch, *, extra_products=(), product_sizes=None, calls=None):
    """Patch astroquery.mast's portal request the way astroquery's own tests do (test_mast.post_mockreturn).

    ``extra_products`` rows are appended to the recorded product list (e.g. a TESS FFI, a JPEG preview);
    ``product_sizes`` overrides the recorded ``size`` of named products (to match the bodies served).
    """
    from astroquery import mast
    from astroquery.utils.mocks import MockResponse

    folder = astroquery_data("mast")

    def post(self, method="POST", url=None, params=None, data=None, **kwargs):
        payload = data or ""
        if "columnsconfig" in url:
            service = "columnsconfig"
        else:
            service = re.search(r"service%22%3A%20%22([\w\.]*)%22", payload).group(1)
        if calls is not None:
            from urllib.parse import unquote

            calls.append((service, unquote(payload)))
        content = (folder / MAST_FILES[service]).read_bytes()
        if service == "Mast.Caom.Products" and (extra_products or product_sizes):
            doc = json.loads(content)
            for row in doc["data"]:
                if product_sizes and row["productFilename"] in product_sizes:
                    row["size"] = product_sizes[row["productFilename"]]
            template = doc["data"][0]
            for extra in extra_products:
                doc["data"].append({**template, **extra})
            content = json.dumps(doc).encode()
        return [MockResponse(content)]

    monkeypatch.setattr(mast.discovery_portal.PortalAPI, "_request", post)
    return mast


def fits_file_bytes(path: Path) -> bytes:
    return Path(os.fspath(path)).read_bytes()


MAST_INVOKE = "/api/v0/invoke"
MAST_COLUMNS = "/portal/Mashup/Mashup.asmx/columnsconfig"
MAST_DOWNLOAD = "/api/v0.1/Download/file"


def mast_service_of(body: str) -> str:
    """The portal service a POST body asks for (``request={"service": "Mast.Caom.Filtered.Position", ...}``)."""
    from urllib.parse import unquote

    m = re.search(r'"service":\s*"([\w\.]*)"', unquote(body))
    return m.group(1) if m else ""


def install_mast_portal(loop, http, *, executing: bool = False, product_sizes=None):
    """The MAST portal on loopback over real HTTP, answering astroquery's recorded JSON; returns Observations.

    The returned astroquery ``ObservationsClass`` is the one
    :func:`astrid_pipeline.archives.mast.mast_observations` builds on ``http``'s
    session, pointed at ``loop``. ``executing=True`` makes the portal answer
    ``"status": "EXECUTING"`` for ever (a query that never finishes).
    ``product_sizes`` overrides the recorded ``size`` of named products (to match the bodies served).
    """
    from astrid_pipeline.archives.mast import mast_observations

    folder = astroquery_data("mast")

    def columns(q):
        return Answer(200, (folder / MAST_FILES["columnsconfig"]).read_bytes(), {"Content-Type": "application/json"})

    def invoke(q):
        if executing:
            return Answer(200, b'{"status": "EXECUTING", "msg": "", "data": []}', {"Content-Type": "application/json"})
        service = mast_service_of(q.get("__body__", ""))
        if service not in MAST_FILES:
            return Answer(400, f"unknown service {service!r}".encode())
        content = (folder / MAST_FILES[service]).read_bytes()
        if service == "Mast.Caom.Products" and product_sizes:
            doc = json.loads(content)
            for row in doc["data"]:
                row["size"] = product_sizes.get(row["productFilename"], row["size"])
            content = json.dumps(doc).encode()
        return Answer(200, content, {"Content-Type": "application/json"})

    loop.routes[MAST_COLUMNS] = columns
    loop.routes[MAST_INVOKE] = invoke
    obs = mast_observations(http)
    obs._portal_api_connection.MAST_REQUEST_URL = loop.url + MAST_INVOKE
    obs._portal_api_connection.COLUMNS_CONFIG_URL = loop.url + MAST_COLUMNS
    return obs
