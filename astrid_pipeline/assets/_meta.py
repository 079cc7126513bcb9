"""Small helpers that turn step results into Dagster metadata."""

from __future__ import annotations

import base64
from pathlib import Path

from dagster import MetadataValue


def to_metadata(values: dict) -> dict:
    out = {}
    for k, v in values.items():
        if isinstance(v, Path):
            out[k] = MetadataValue.path(str(v))
        elif isinstance(v, bool):
            out[k] = MetadataValue.bool(v)
        elif isinstance(v, int):
            out[k] = MetadataValue.int(v)
        elif isinstance(v, float):
            out[k] = MetadataValue.float(v) if v == v else MetadataValue.text("nan")
        elif isinstance(v, (dict, list)):
            out[k] = MetadataValue.json(v)
        elif v is None:
            out[k] = MetadataValue.text("none")
        else:
            out[k] = MetadataValue.text(str(v))
    return out


def png_markdown(path: Path, title: str) -> MetadataValue:
    data = base64.b64encode(Path(path).read_bytes()).decode()
    return MetadataValue.md(f"**{title}**\n\n![{title}](data:image/png;base64,{data})")


def table_markdown(df, float_digits: int = 3) -> MetadataValue:
    """A small DataFrame as a Markdown table (no extra dependency)."""
    cols = list(df.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for _, row in df.iterrows():
        cells = []
        for c in cols:
            v = row[c]
            cells.append(f"{v:.{float_digits}f}" if isinstance(v, float) else str(v))
        lines.append("| " + " | ".join(cells) + " |")
    return MetadataValue.md("\n".join(lines))
