"""SkyView cutouts (DSS2, SDSS, GALEX, 2MASS, WISE, ...) through astroquery.skyview.

astroquery does the SkyView protocol: it reads the query form
(``basicform.pl``), validates the survey name against the form's lists,
fills the form and parses the result page for the FITS link. The FITS file
itself is downloaded by our HTTP layer (retries, rate limit, verified atomic
write, cache), not by astroquery, so a cut-off download never reaches a
reader. The form requests are wrapped in the same retry rules.

Images are ``pixels`` x ``pixels`` at ``pixel_scale_arcsec`` (240 x 240 at
1"/px by default), TAN projection, J2000, linear scaling, centred on the
region.

astroquery's SkyView client runs on our HTTP session, so its form requests
get the policy's timeout, rate limit, deadline and size check; astroquery's
disk cache is off (a stale form or result page is never served). The
download cache is looked up before any request.
"""

from __future__ import annotations

from pathlib import Path

from astrid_pipeline.archives.errors import ArchiveConfigError, NoDataError
from astrid_pipeline.archives.http import DownloadCache, HttpClient
from astrid_pipeline.archives.records import (
    CACHED, DOWNLOADED, EpochImage, ObservationRecord, cache_first, describe_image, load_fits, option,
    stamp_provenance,
)
from astrid_pipeline.regions import Region

SKYVIEW_URL = "https://skyview.gsfc.nasa.gov/current/cgi/basicform.pl"
#: surveys the sky branch is meant for (any survey SkyView lists is accepted)
STANDARD_SURVEYS = ("DSS2 Red", "DSS2 Blue", "SDSSr", "SDSSg", "SDSSi", "GALEX Near UV", "2MASS-J", "2MASS-K",
                    "WISE 3.4")


class SkyViewArchive:
    name = "skyview"

    def __init__(self, http: HttpClient, cache: DownloadCache, *, survey: str = "DSS2 Red", pixels: int = 240,
                 pixel_scale_arcsec: float = 1.0, url: str = SKYVIEW_URL, refresh: bool = False):
        if not (16 <= pixels <= 5000):
            raise ArchiveConfigError(f"SkyView image size {pixels} px is outside 16..5000")
        if not (pixel_scale_arcsec > 0):
            raise ArchiveConfigError(f"SkyView pixel scale {pixel_scale_arcsec} arcsec must be positive")
        self.http, self.cache = http, cache
        self.survey, self.pixels, self.scale, self.url = survey, int(pixels), float(pixel_scale_arcsec), url
        self.refresh = bool(refresh)  # True: ask SkyView even when the region's image is cached
        self._service = None

    def service(self):
        if self._service is None:
            from astroquery.skyview import SkyViewClass

            sv = SkyViewClass()
            sv.URL = self.url
            sv._session = self.http.session  # timeouts, rate limit, deadline, size check: see the module docstring
            base_request = sv._request

            def request(method, url, *args, **kwargs):
                kwargs["cache"] = False  # never serve a stale form or result page from astroquery's disk cache
                return base_request(method, url, *args, **kwargs)

            sv._request = request
            self._service = sv
        return self._service

    def image_url(self, ra: float, dec: float, survey: str) -> str:
        """The FITS URL SkyView makes for this position (astroquery's form and result parsing)."""
        import astropy.units as u
        from astropy.coordinates import SkyCoord

        sv = self.service()
        pos = SkyCoord(ra * u.deg, dec * u.deg, frame="icrs")
        side = self.pixels * self.scale * u.arcsec

        def valid() -> bool:
            return survey in sv._valid_surveys

        if not self.http.call_with_retries(valid, self.url):
            raise ArchiveConfigError(f"{self.url}: SkyView does not list survey {survey!r} "
                                     f"(e.g. {', '.join(STANDARD_SURVEYS)})")

        def query():
            return sv.get_image_list(position=pos, survey=survey, pixels=str(self.pixels), width=side, height=side,
                                     projection="Tan", coordinates="J2000", scaling="Linear", cache=False)

        urls = self.http.call_with_retries(query, self.url)
        if not urls:
            raise NoDataError(self.url, f"SkyView made no {survey} image at RA={ra:.5f} Dec={dec:+.5f}")
        return urls[0]

    def fetch_epoch(self, region: Region, epoch: str) -> EpochImage:
        survey = str(option(region, "skyview_survey", self.survey))
        query = (f"skyview survey={survey} ra={region.ra:.6f} dec={region.dec:+.6f} pixels={self.pixels} "
                 f"scale={self.scale}arcsec")
        # the cache key is the query (SkyView's output URLs are temporary names)
        key_params = {"survey": survey, "ra": f"{region.ra:.6f}", "dec": f"{region.dec:.6f}",
                      "pixels": self.pixels, "scale": self.scale}
        dest = self.cache.path_for(self.name, self.url, key_params, f"{survey.replace(' ', '_')}.fits")
        key = {**key_params, "region": region.name, "epoch": epoch, "url": self.url}
        return cache_first(self.cache, self.name, key, self.url,
                           lambda: self._fetch(region, epoch, survey, query, dest), refresh=self.refresh)

    def _fetch(self, region: Region, epoch: str, survey: str, query: str, dest: Path) -> EpochImage:
        status, url = CACHED, ""
        if self.cache.lookup(dest, self.url):  # a file cached before resolution records existed
            from astropy.io import fits

            url = str(fits.getheader(dest).get("ARCHURL", ""))
        else:
            url = self.image_url(region.ra, region.dec, survey)

            def transform(tmp: Path, u: str) -> None:
                stamp_provenance(tmp, archive=self.name, url=u, query=query)

            self.http.download(url, dest, transform=transform)
            status = DOWNLOADED
        rec = ObservationRecord(region=region.name, epoch=epoch, archive=self.name,
                                obs_id=f"{survey}@{region.ra:.5f},{region.dec:+.5f}", survey=survey,
                                instrument=survey, filter=survey, url=url, file_path=str(dest), status=status,
                                query=query, product=Path(url).name if url else dest.name)
        describe_image(dest, rec)
        return EpochImage(load_fits(dest), url or str(dest), rec)
