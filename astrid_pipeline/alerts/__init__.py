"""Alert packets in the public ZTF Avro alert schema (v4.02), plain Python (no Dagster).

- :mod:`.schema`: the bundled ``.avsc`` files (unmodified, Apache-2.0, see
  ``schema/README.md``) parsed for fastavro;
- :mod:`.ids`: 64-bit candidate ids unique across regions and epochs, IAU-style
  object names, and the ZTF-only identifiers (``pid``, ``rfid``, ``field``,
  ``rcid``, ``programid``, ``nid``) filled from AstrID's own;
- :mod:`.photometry`: magnitudes from the zero point (``MAGZP`` and its
  relatives, or HST-style ``PHOTFLAM``/``PHOTPLAM``), instrumental and flagged
  without one; times as JD (UTC) at the start of the exposure;
- :mod:`.stamps`: science / template / difference stamps by
  :class:`astropy.nddata.Cutout2D` as gzipped FITS with their WCS;
- :mod:`.packets`: :func:`~.packets.write_alerts` / :func:`~.packets.read_alerts`.

Importing this package imports nothing heavy; fastavro and astropy are
imported inside the functions that need them.
"""
