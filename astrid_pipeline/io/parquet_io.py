"""Parquet catalogs: one schema per table, units in field metadata, hive layout.

Tables are written as ``<root>/catalogs/<table>/<key>=<value>/part-0.parquet``
so pandas, polars and DuckDB read a whole catalog (all partitions) with the
partition key as a column, and no project code is needed to read them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from astrid_pipeline.io.atomic import atomic_path


@dataclass(frozen=True)
class Column:
    """One column of a catalog schema."""

    name: str
    type: pa.DataType
    unit: str = ""
    description: str = ""

    def field(self) -> pa.Field:
        meta = {"description": self.description}
        if self.unit:
            meta["unit"] = self.unit
        return pa.field(self.name, self.type, metadata=meta)


def make_schema(columns: Sequence[Column], table_meta: Mapping[str, str] | None = None) -> pa.Schema:
    meta = {k: str(v) for k, v in (table_meta or {}).items()}
    return pa.schema([c.field() for c in columns], metadata=meta or None)


def to_arrow(df: pd.DataFrame, schema: pa.Schema) -> pa.Table:
    """Convert a DataFrame to a table with exactly ``schema`` (missing columns are an error)."""
    missing = [f.name for f in schema if f.name not in df.columns]
    if missing:
        raise KeyError(f"table lacks columns {missing} required by its schema")
    arrays = []
    for f in schema:
        values = df[f.name]
        if pa.types.is_string(f.type):
            arrays.append(pa.array(values.astype(object).where(values.notna(), None).tolist(), type=f.type))
        else:
            arrays.append(pa.array(np.asarray(values), type=f.type, from_pandas=True))
    return pa.Table.from_arrays(arrays, schema=schema)


def partition_dir(root: str | os.PathLike, table: str, partition: Mapping[str, str]) -> Path:
    p = Path(root) / "catalogs" / table
    for k, v in partition.items():
        p = p / f"{k}={v}"
    return p


def write_partitioned(
    table: pa.Table | pd.DataFrame,
    root: str | os.PathLike,
    name: str,
    partition: Mapping[str, str],
    schema: pa.Schema | None = None,
) -> Path:
    """Write one partition of a catalog atomically; returns the file path.

    Partition columns are not stored in the file (the hive path holds them), so
    reading the whole catalog with pandas, polars or DuckDB yields each exactly
    once; :func:`read_partitioned` adds them back for a single partition.
    """
    keys = set(partition)
    if schema is not None:
        schema = pa.schema([f for f in schema if f.name not in keys], metadata=schema.metadata)
    if isinstance(table, pd.DataFrame):
        table = table.drop(columns=[c for c in table.columns if c in keys])
        if schema is None:
            table = pa.Table.from_pandas(table, preserve_index=False)
        else:
            table = to_arrow(table, schema)
    else:
        table = table.drop_columns([c for c in table.column_names if c in keys])
    out = partition_dir(root, name, partition) / "part-0.parquet"
    with atomic_path(out) as tmp:
        pq.write_table(table, tmp, compression="zstd")
    return out


def read_partitioned(root: str | os.PathLike, name: str, partition: Mapping[str, str] | None = None) -> pd.DataFrame:
    """Read one partition (or, with ``partition=None``, the whole catalog)."""
    if partition:
        path = partition_dir(root, name, partition) / "part-0.parquet"
        df = pq.read_table(path).to_pandas()
        for k, v in partition.items():
            df[k] = v
        return df
    base = Path(root) / "catalogs" / name
    return pq.read_table(base, partitioning="hive").to_pandas()


def field_units(path: str | os.PathLike) -> dict[str, str]:
    """Units stored in a Parquet file's field metadata."""
    schema = pq.read_schema(path)
    out = {}
    for f in schema:
        if f.metadata and b"unit" in f.metadata:
            out[f.name] = f.metadata[b"unit"].decode()
    return out
