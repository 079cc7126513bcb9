"""The bundled ZTF alert schema v4.02, parsed for fastavro.

The five ``.avsc`` files in ``schema/`` are upstream's, byte for byte; their
sha256 sums are checked at load so an accidental edit is an error, not a
silently different schema. ``alert.avsc`` names the nested records by their
full names (``ztf.alert.candidate`` ...), so they are parsed first into one
``named_schemas`` dictionary.
"""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path

from .errors import AlertSchemaError

SCHEMA_DIR = Path(__file__).resolve().parent / "schema"
SCHEMA_VERSION = "4.02"
#: sha256 of the upstream files (ZwickyTransientFacility/ztf-avro-alert, see schema/README.md)
SHA256 = {
    "cutout.avsc": "89090bf2019f21b86591153460e6aaf2fd30051bcfd718631d349db83f8c9067",
    "candidate.avsc": "e6e5d2f7d396e7ef66d8e1c1cd47484e862121a5d2cfac7e35a82768227ba146",
    "prv_candidate.avsc": "944cc95acfcbe4618e8145fc2f22ee034c8edd210398b105002720b816a9302c",
    "fp_hist.avsc": "bd645005174b3408fd705fd0601cdaac1b8416bb4b1ba1443938124d4b1654c5",
    "alert.avsc": "9fc911a451b78109626175e522d287ba8de44282ce632a2d0e9d6ccc7a1ff828",
}
#: parse order: every record before the records that refer to it
ORDER = ("cutout.avsc", "candidate.avsc", "prv_candidate.avsc", "fp_hist.avsc", "alert.avsc")


def raw_schema(name: str) -> dict:
    """One bundled ``.avsc`` as a dict, after checking it is upstream's file."""
    path = SCHEMA_DIR / name
    if not path.is_file():
        raise AlertSchemaError(path, "bundled ZTF schema file is missing (reinstall astrid-pipeline)")
    payload = path.read_bytes()
    digest = hashlib.sha256(payload).hexdigest()
    if name in SHA256 and digest != SHA256[name]:
        raise AlertSchemaError(path, f"sha256 {digest[:16]}... differs from the upstream ZTF v{SCHEMA_VERSION} file")
    return json.loads(payload)


def _inline(node, defs: dict, done: set):
    """Replace each named-type reference by its definition at its first use (later uses keep the name)."""
    if isinstance(node, str):
        if node in defs and node not in done:
            done.add(node)
            return _inline(defs[node], defs, done)
        return node
    if isinstance(node, list):
        return [_inline(n, defs, done) for n in node]
    if isinstance(node, dict):
        return {k: (_inline(v, defs, done) if k in ("type", "items", "fields", "values") else v)
                for k, v in node.items()}
    return node


def standalone_alert_schema() -> dict:
    """The ``ztf.alert`` schema with every nested record written out (what goes into each Avro file)."""
    defs = {}
    for name in ORDER[:-1]:
        d = raw_schema(name)
        defs[f"{d['namespace']}.{d['name']}"] = d
    return _inline(raw_schema("alert.avsc"), defs, set())


@functools.lru_cache(maxsize=1)
def alert_schema():
    """The parsed top-level ``ztf.alert`` schema (fastavro), self-contained, so any reader resolves it."""
    from fastavro import parse_schema

    return parse_schema(standalone_alert_schema())


def record_fields(name: str) -> list[dict]:
    """The field list of one bundled record (``alert``, ``candidate``, ``prv_candidate``, ``fp_hist``, ``cutout``)."""
    return list(raw_schema(f"{name}.avsc")["fields"])


def required_fields(name: str) -> list[str]:
    """Fields of a record without a default: a writer must fill them."""
    return [f["name"] for f in record_fields(name) if "default" not in f]
