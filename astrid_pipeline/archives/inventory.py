"""The observation inventory's table: what each archive holds for a region, fetched, skipped or failed."""

from __future__ import annotations

import pyarrow as pa

from astrid_pipeline.io.parquet_io import Column, make_schema

INVENTORY_SCHEMA = make_schema([
    Column("region", pa.string(), "", "sky region (partition key)"),
    Column("epoch", pa.string(), "", "science or reference"),
    Column("archive", pa.string(), "", "simulated, local, skyview, ps1 or mast"),
    Column("obs_id", pa.string(), "", "archive observation id (MAST obs_id, PS1 sky cell, SkyView survey@position)"),
    Column("ra", pa.float64(), "deg", "ICRS right ascension of the image centre (MAST: of the observation)"),
    Column("dec", pa.float64(), "deg", "ICRS declination"),
    Column("obs_mjd", pa.float64(), "d", "observation start (MJD); NaN where the archive does not say"),
    Column("survey", pa.string(), "", "survey or mission (DSS2 Red, PS1 3pi stack, HST, ...)"),
    Column("instrument", pa.string(), "", "instrument"),
    Column("filter", pa.string(), "", "filter or band"),
    Column("exptime_s", pa.float64(), "s", "exposure time"),
    Column("url", pa.string(), "", "URL (or local path) the file came from"),
    Column("file_path", pa.string(), "", "local file (the download cache or the local folder)"),
    Column("product", pa.string(), "", "product file name at the archive"),
    Column("shape", pa.string(), "pix", "image shape, rows x columns"),
    Column("pixscale_arcsec", pa.float64(), "arcsec", "mean pixel scale from the WCS"),
    Column("status", pa.string(), "", "downloaded, cached, skipped, failed, simulated or local"),
    Column("downloaded", pa.bool_(), "", "fetched from the service in this run"),
    Column("cached", pa.bool_(), "", "reused from the download cache (no request)"),
    Column("skipped", pa.bool_(), "", "listed but not used (see reason)"),
    Column("failed", pa.bool_(), "", "could not be fetched (see reason)"),
    Column("reason", pa.string(), "", "why skipped or failed"),
    Column("query", pa.string(), "", "the archive query that found it"),
])


def inventory_frame(records):
    """The inventory rows of ObservationRecords as a DataFrame with the schema's columns."""
    import pandas as pd

    rows = [r.to_row() for r in records]
    cols = [f.name for f in INVENTORY_SCHEMA]
    return pd.DataFrame(rows, columns=cols) if rows else pd.DataFrame({c: [] for c in cols})


def failed_inventory(region: str, reason: str):
    """One failed row for a region that could not be listed at all (unknown key, bad configuration)."""
    import pandas as pd

    cols = [f.name for f in INVENTORY_SCHEMA]
    row = {c: None for c in cols}
    row.update(region=region, epoch="", archive="", status="failed", failed=True, downloaded=False, cached=False,
               skipped=False, reason=reason[:2000])
    return pd.DataFrame([row], columns=cols)
