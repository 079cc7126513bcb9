"""A local folder of FITS files as an archive.

Which file is which, first match wins:

1. a manifest at ``<root>/manifest.yaml`` (or ``manifest.csv``) with rows
   ``region, epoch, file`` (``file`` relative to the root, or absolute)::

       images:
         - {region: M101, epoch: science, file: m101/2011-08-25.fits}
         - {region: M101, epoch: reference, file: m101/ps1_r_stack.fits}

2. the layout ``<root>/<region>/science.fits`` and
   ``<root>/<region>/reference.fits`` (``.fits.gz``, ``.fit`` and ``.fts``
   also accepted);
3. the headers: the one FITS file in ``<root>/<region>/`` whose primary
   header has ``ASTREPCH = 'science'`` (or ``'reference'``).

A manifest row may also say how to read its file, with the image options of
:mod:`astrid_pipeline.archives.base` as extra keys / columns (``hdu``,
``band``, ``error_ext``, ``variance_ext``, ``weight_ext``, ``bunit``,
``gain``, ``psf``, ``cosmic_rays``; a blank CSV cell means "not given"); a
relative ``psf`` is resolved against the manifest's folder::

    images:
      - {region: F1, epoch: science, file: f1_i2d.fits, hdu: SCI, error_ext: ERR, psf: psf_f150w.fits}

They reach the sky branch as ``ArchivePair.image_options``.
"""

from __future__ import annotations

import csv
import io
import logging
from pathlib import Path

from astrid_pipeline.archives.base import IMAGE_OPTIONS, ArchivePair, normalize_image_options
from astrid_pipeline.archives.records import LOCAL, EpochImage, ObservationRecord, describe_image
from astrid_pipeline.errors import ConfigError, InputFileError
from astrid_pipeline.io.fits_io import open_fits
from astrid_pipeline.io.safe_yaml import clip, short
from astrid_pipeline.layout import safe_key
from astrid_pipeline.regions import Region

SUFFIXES = (".fits", ".fits.gz", ".fit", ".fts")
EPOCHS = ("science", "reference")
#: manifest keys that are neither the file's identity nor an image option, accepted without a warning
_MANIFEST_NOTES = {"note", "notes", "comment", "description"}
#: largest manifest read (bytes, checked before reading) and most rows accepted
MAX_MANIFEST_BYTES = 8 << 20
MAX_MANIFEST_ROWS = 200_000
log = logging.getLogger(__name__)


class LocalFolderArchive:
    name = "local"

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self._manifest: dict[tuple[str, str], Path] | None = None
        self._options: dict[tuple[str, str], dict] = {}

    # ------------------------------------------------------------------ manifest
    def manifest(self) -> dict[tuple[str, str], Path]:
        if self._manifest is None:
            self._manifest = self._read_manifest()
        return self._manifest

    def _read_manifest(self) -> dict[tuple[str, str], Path]:
        rows: list[dict] = []
        ypath, cpath = self.root / "manifest.yaml", self.root / "manifest.csv"
        source = None
        from astrid_pipeline.io.safe_yaml import load_yaml_text, read_text_file

        if ypath.exists():
            source = ypath
            try:
                doc = load_yaml_text(read_text_file(ypath, "manifest", max_bytes=MAX_MANIFEST_BYTES, kind="YAML"),
                                     "manifest") or {}
            except ConfigError as exc:
                raise InputFileError(ypath, str(exc)) from None
            if not isinstance(doc, dict) or not isinstance(doc.get("images"), list):
                raise InputFileError(ypath, "manifest needs an 'images' list of {region, epoch, file}")
            rows = doc["images"]
        elif cpath.exists():
            source = cpath
            try:
                text = read_text_file(cpath, "manifest", max_bytes=MAX_MANIFEST_BYTES, kind="CSV")
                rows = list(csv.DictReader(io.StringIO(text, newline="")))
            except ConfigError as exc:
                raise InputFileError(cpath, str(exc)) from None
            except csv.Error as exc:
                raise InputFileError(cpath, f"manifest is not a valid CSV file ({str(exc)[:200]})") from None
        if len(rows) > MAX_MANIFEST_ROWS:
            raise InputFileError(source, f"manifest has {len(rows)} rows; at most {MAX_MANIFEST_ROWS} are accepted")
        out: dict[tuple[str, str], Path] = {}
        for i, row in enumerate(rows):
            if isinstance(row, dict) and None in row:
                raise InputFileError(source, f"manifest row {i + 1} has more values than the header has columns")
            if not isinstance(row, dict) or not {"region", "epoch", "file"} <= set(row):
                raise InputFileError(source, f"manifest row {i + 1} needs region, epoch and file: {short(row)}")
            epoch = str(row["epoch"]).strip().lower()
            if epoch not in EPOCHS:
                raise InputFileError(source,
                                     f"manifest row {i + 1}: epoch {short(row['epoch'])} is not science or reference")
            key = (str(row["region"]).strip(), epoch)
            if key in out:
                raise InputFileError(source, f"manifest names two {epoch} files for region {short(key[0])}")
            f = Path(str(row["file"]).strip())
            out[key] = f if f.is_absolute() else self.root / f
            extra = {k: v for k, v in row.items() if k not in ("region", "epoch", "file")}
            unknown = sorted(str(k) for k in extra if k not in IMAGE_OPTIONS and k not in _MANIFEST_NOTES)
            if unknown:
                log.warning("%s: manifest row %d has keys %s that are not image options (%s); ignored",
                            source, i + 1, clip(', '.join(unknown), 200), ", ".join(IMAGE_OPTIONS))
            try:
                self._options[key] = normalize_image_options(
                    {k: v for k, v in extra.items() if k in IMAGE_OPTIONS}, base_dir=source.parent,
                    where=f"manifest row {i + 1}")
            except ConfigError as exc:
                raise InputFileError(source, str(exc)) from exc
        return out

    def image_options(self, region: str, epoch: str) -> dict:
        """The manifest's image options for one epoch of a region ({} when none are given)."""
        self.manifest()
        return dict(self._options.get((region, epoch), {}))

    # ------------------------------------------------------------------ lookup
    def path_for(self, region: str, epoch: str) -> Path:
        listed = self.manifest().get((region, epoch))
        if listed is not None:
            if not listed.exists():
                raise InputFileError(listed, f"listed in the local archive's manifest as the {epoch} image of "
                                             f"region {region!r}, but the file does not exist")
            return listed
        folder = self.root / safe_key(region)
        for suffix in SUFFIXES:
            p = folder / f"{epoch}{suffix}"
            if p.exists():
                return p
        by_header = self._by_header(folder, epoch)
        if by_header is not None:
            return by_header
        raise InputFileError(folder / f"{epoch}.fits", f"no {epoch} image for region {region!r} in the local archive "
                                                       "(no manifest entry, no such file, no header with "
                                                       f"ASTREPCH='{epoch}')")

    @staticmethod
    def _by_header(folder: Path, epoch: str) -> Path | None:
        if not folder.is_dir():
            return None
        from astropy.io import fits

        hits = []
        for p in sorted(folder.iterdir()):
            if p.name.startswith(".") or not p.name.lower().endswith(SUFFIXES):
                continue
            try:
                value = str(fits.getval(p, "ASTREPCH", ext=0)).strip().lower()
            except (KeyError, OSError, ValueError):
                continue
            if value == epoch:
                hits.append(p)
        if len(hits) > 1:
            raise InputFileError(folder, f"{len(hits)} files claim ASTREPCH='{epoch}': "
                                         f"{', '.join(h.name for h in hits)}")
        return hits[0] if hits else None

    # ------------------------------------------------------------------ archive interface
    def fetch_epoch(self, region: Region, epoch: str) -> EpochImage:
        p = self.path_for(region.name, epoch)
        rec = ObservationRecord(region=region.name, epoch=epoch, archive=self.name, obs_id=p.name, url=str(p),
                                file_path=str(p), status=LOCAL, query=f"local folder {self.root}")
        hdul = open_fits(p)
        try:
            describe_image(p, rec)
        except Exception:  # a header the sky branch will reject by name later; the inventory keeps NaNs
            pass
        return EpochImage(hdul, str(p), rec)

    def fetch_pair(self, region: Region) -> ArchivePair:
        ps = self.path_for(region.name, "science")
        pr = self.path_for(region.name, "reference")
        options = {e: o for e in EPOCHS if (o := self.image_options(region.name, e))}
        return ArchivePair(science=open_fits(ps), reference=open_fits(pr), science_source=str(ps),
                           reference_source=str(pr), provenance={"archive": "local", "root": str(self.root)},
                           image_options=options)
