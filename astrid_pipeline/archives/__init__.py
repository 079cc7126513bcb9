"""Archive clients (plain Python): where science and reference images come from.

- :mod:`.simulated` - the built-in simulated survey (default, offline)
- :mod:`.local` - a folder of FITS files (layout, manifest or ASTREPCH headers)
- :mod:`.skyview` - SkyView cutouts (DSS2, SDSS, GALEX, 2MASS, WISE) via astroquery
- :mod:`.ps1` - Pan-STARRS1 image-service cutouts, linearised from the asinh scaling
- :mod:`.mast` - MAST observations (HST, JWST, PS1, TESS, GALEX) via astroquery
- :mod:`.http` - retries/backoff/Retry-After, deadlines, size limits, safe redirects, verified atomic downloads,
  cache
- :mod:`.ratelimit` - the request-rate limit per host, shared by every process using one cache root
- :mod:`.redact` - ``strip_secrets``: credentials and tokens out of every URL that is stored or logged
- :mod:`.inventory` - the observation inventory's table
- :mod:`.select` - per-region, per-epoch choice of archive (region-catalog options)
"""

from astrid_pipeline.archives.base import ArchivePair

__all__ = ["ArchivePair"]
