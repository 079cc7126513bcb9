"""Small, typed materialization metadata.

- :func:`to_metadata` maps plain Python values (numbers, paths, dicts) to ``MetadataValue``s;
- :func:`column_schema` turns a Parquet (pyarrow) schema with units and descriptions in its field
  metadata into ``dagster/column_schema``;
- :func:`table_preview` gives a ``MetadataValue.table`` of the first rows of a DataFrame;
- :func:`thumbnail` embeds a PNG only when it is at most ``MAX_THUMBNAIL_BYTES`` (50 kB), shrinking it
  first; anything larger stays a file whose path is in the metadata, so the event log stays small.
"""

from __future__ import annotations

import base64
import io
import math
from pathlib import Path

from dagster import MetadataValue, TableColumn, TableRecord, TableSchema

MAX_THUMBNAIL_BYTES = 50_000


def to_metadata(values: dict) -> dict:
    out = {}
    for k, v in values.items():
        out[k] = _value(v)
    return out


def _value(v):
    import numpy as np

    if isinstance(v, MetadataValue):
        return v
    if isinstance(v, Path):
        return MetadataValue.path(str(v))
    if isinstance(v, (bool, np.bool_)):
        return MetadataValue.bool(bool(v))
    if isinstance(v, (int, np.integer)):
        return MetadataValue.int(int(v))
    if isinstance(v, (float, np.floating)):
        v = float(v)
        return MetadataValue.float(v) if math.isfinite(v) else MetadataValue.text(str(v))
    if isinstance(v, (dict, list, tuple)):
        return MetadataValue.json(_jsonable(v))
    if v is None:
        return MetadataValue.text("none")
    return MetadataValue.text(str(v))


def _jsonable(v):
    import numpy as np

    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        v = float(v)
        return v if math.isfinite(v) else None
    if isinstance(v, (np.bool_,)):
        return bool(v)
    if isinstance(v, Path):
        return str(v)
    return v


def _arrow_type_name(t) -> str:
    import pyarrow as pa

    if pa.types.is_floating(t):
        return "float"
    if pa.types.is_integer(t):
        return "int"
    if pa.types.is_boolean(t):
        return "bool"
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return "string"
    return str(t)


def column_schema(schema) -> MetadataValue:
    """``dagster/column_schema`` from a pyarrow schema whose fields carry ``unit``/``description`` metadata."""
    cols = []
    for f in schema:
        meta = {k.decode(): v.decode() for k, v in (f.metadata or {}).items()}
        unit = meta.get("unit", "")
        desc = meta.get("description", "")
        cols.append(TableColumn(name=f.name, type=_arrow_type_name(f.type),
                                description=f"{desc} [{unit}]" if unit else desc or None))
    return MetadataValue.table_schema(TableSchema(columns=cols))


def table_preview(df, columns=None, n: int = 10, digits: int = 4) -> MetadataValue:
    """The first ``n`` rows of ``df`` as a typed ``MetadataValue.table``."""
    import numpy as np

    cols = list(columns or df.columns)
    head = df[cols].head(n)
    records = []
    for _, row in head.iterrows():
        rec = {}
        for c in cols:
            v = row[c]
            if isinstance(v, (float, np.floating)):
                v = round(float(v), digits) if math.isfinite(float(v)) else None
            elif isinstance(v, (np.integer,)):
                v = int(v)
            elif isinstance(v, (np.bool_,)):
                v = bool(v)
            elif v is not None and not isinstance(v, (int, float, bool, str)):
                v = str(v)
            rec[c] = v
        records.append(TableRecord(rec))
    from pandas.api import types as pt

    types = {c: ("bool" if pt.is_bool_dtype(head[c]) else "int" if pt.is_integer_dtype(head[c]) else
                 "float" if pt.is_float_dtype(head[c]) else "string") for c in cols}
    return MetadataValue.table(records, schema=TableSchema(columns=[TableColumn(c, types[c]) for c in cols]))


def png_bytes_under(render, max_bytes: int = MAX_THUMBNAIL_BYTES, sizes=(256, 192, 128, 96)) -> bytes | None:
    """PNG bytes from ``render(side_px) -> bytes``, trying smaller sides until they fit ``max_bytes``."""
    for side in sizes:
        data = render(side)
        if len(data) <= max_bytes:
            return data
    return None


def thumbnail(png: bytes | str | Path | None, title: str, path: str | Path | None = None,
              max_bytes: int = MAX_THUMBNAIL_BYTES) -> MetadataValue:
    """Markdown with the PNG embedded when it is at most ``max_bytes``; else a pointer to the file."""
    data = Path(png).read_bytes() if isinstance(png, (str, Path)) else png
    if data is not None and len(data) <= max_bytes:
        b64 = base64.b64encode(data).decode()
        return MetadataValue.md(f"**{title}**\n\n![{title}](data:image/png;base64,{b64})")
    where = f" — full picture: `{path}`" if path else ""
    return MetadataValue.md(f"**{title}**: picture larger than {max_bytes // 1000} kB, not embedded{where}")


def array_thumbnail_png(image, side: int, vmin=None, vmax=None, marks=None) -> bytes:
    """A grey-scale PNG of a 2-D array block-averaged to at most ``side`` pixels, optional circled marks.

    ``marks``: iterable of (x, y, colour) in the array's pixel coordinates.
    """
    import numpy as np
    from PIL import Image, ImageDraw

    a = np.asarray(image, dtype=np.float32)
    step = max(1, int(math.ceil(max(a.shape) / side)))
    ny, nx = (a.shape[0] // step) * step, (a.shape[1] // step) * step
    if step > 1:
        import warnings

        with warnings.catch_warnings():  # blocks that are all NaN (outside the footprint) stay NaN
            warnings.simplefilter("ignore", RuntimeWarning)
            small = np.nanmean(a[:ny, :nx].reshape(ny // step, step, nx // step, step), axis=(1, 3))
    else:
        small = a
    finite = small[np.isfinite(small)]
    lo = vmin if vmin is not None else (float(np.percentile(finite, 1)) if finite.size else 0.0)
    hi = vmax if vmax is not None else (float(np.percentile(finite, 99.5)) if finite.size else 1.0)
    scaled = np.clip((np.nan_to_num(small, nan=lo) - lo) / max(hi - lo, 1e-12), 0, 1)
    img = Image.fromarray((255 * scaled[::-1]).astype(np.uint8), mode="L").convert("RGB")
    if marks:
        draw = ImageDraw.Draw(img)
        h = small.shape[0]
        for x, y, colour in marks:
            cx, cy = x / step, h - 1 - y / step
            r = 4
            draw.ellipse((cx - r, cy - r, cx + r, cy + r), outline=colour)
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=True)
    return buf.getvalue()
