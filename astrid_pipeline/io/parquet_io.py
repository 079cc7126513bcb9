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
    table = with_astropy_metadata(table)  # astropy's Table.read then keeps units and descriptions
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


# --------------------------------------------------------------------------- astropy and VOTable conventions
def _unit_and_description(f: pa.Field) -> tuple[str, str]:
    md = f.metadata or {}
    return md.get(b"unit", b"").decode(), md.get(b"description", b"").decode()


def astropy_metadata(table: pa.Table) -> dict[str, str]:
    """Schema metadata that ``astropy.table.Table.read(<file>.parquet)`` reads units and descriptions from.

    astropy's own Parquet writer stores an ECSV-style YAML header under the
    ``table_meta_yaml`` key (one ``datatype`` entry per column with ``unit``
    and ``description``) and each string column's length under
    ``table::len::<name>``; this builds the same keys from the units and
    descriptions in the table's field metadata, so a catalog written by
    :func:`write_partitioned` keeps its units in astropy without project code.
    """
    import warnings

    from astropy.table import Column as AColumn
    from astropy.table import Table
    from astropy.table import meta as ameta
    from astropy.units import UnitsWarning

    cols = []
    out: dict[str, str] = {}
    for f in table.schema:
        unit, desc = _unit_and_description(f)
        if pa.types.is_string(f.type) or pa.types.is_large_string(f.type) or pa.types.is_dictionary(f.type):
            values = [v for v in table.column(f.name).to_pylist() if v is not None]
            n = max([len(str(v)) for v in values] + [1])
            out[f"table::len::{f.name}"] = str(n)
            dtype = f"U{n}"
        elif pa.types.is_boolean(f.type):
            dtype = "bool"
        else:
            try:
                dtype = np.dtype(f.type.to_pandas_dtype())
            except (NotImplementedError, TypeError):
                continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UnitsWarning)
            cols.append(AColumn(np.zeros(0, dtype=dtype), name=f.name, unit=unit or None, description=desc or None))
    out["table_meta_yaml"] = "\n".join(ameta.get_yaml_from_table(Table(cols)))
    return out


def with_astropy_metadata(table: pa.Table) -> pa.Table:
    """``table`` with :func:`astropy_metadata` merged into its schema metadata."""
    md = {k.decode(): v.decode() for k, v in (table.schema.metadata or {}).items()}
    md.update(astropy_metadata(table))
    return table.replace_schema_metadata(md)


def read_catalog_table(path: str | os.PathLike, columns: Sequence[str] | None = None):
    """A Parquet file or a hive-partitioned catalog folder as an :class:`astropy.table.Table` with units.

    Units and descriptions come from the field metadata (written by
    :func:`make_schema`), so this reads files written before astropy's
    ``table_meta_yaml`` was added too. Partition columns (from the folder
    names) are plain strings.
    """
    import warnings

    from astropy.table import Table
    from astropy.units import UnitsWarning

    p = Path(path)
    if p.is_dir():
        at = pq.read_table(p, partitioning="hive", columns=list(columns) if columns else None)
    else:
        at = pq.read_table(p, columns=list(columns) if columns else None)
    t = Table()
    for f in at.schema:
        col = at.column(f.name)
        if pa.types.is_dictionary(f.type):
            col = col.cast(pa.string())
        if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
            values = np.array([("" if v is None else v) for v in col.to_pylist()], dtype=str)
        else:
            values = col.to_numpy(zero_copy_only=False)
        unit, desc = _unit_and_description(f)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UnitsWarning)
            t[f.name] = values
            if unit:
                t[f.name].unit = unit
        if desc:
            t[f.name].description = desc
    return t


#: numpy types VOTable cannot hold, and what they are written as (VOTable 1.4 has no signed 8-bit integer)
VOTABLE_UPCAST = {np.dtype("int8"): np.dtype("int16"), np.dtype("uint16"): np.dtype("int32"),
                  np.dtype("uint32"): np.dtype("int64")}


def write_votable(table, path: str | os.PathLike, name: str = "catalog") -> Path:
    """Write a catalog (astropy Table, pandas DataFrame, pyarrow Table, or a Parquet path) as a VOTable, atomically.

    Units and descriptions are kept; integer types VOTable lacks are widened
    (:data:`VOTABLE_UPCAST`: the int8 ``sign`` column becomes int16);
    categorical / dictionary columns become strings.
    """
    import warnings

    from astropy.io.votable import from_table
    from astropy.io.votable.exceptions import VOWarning
    from astropy.table import Table
    from astropy.units import UnitsWarning

    if isinstance(table, (str, os.PathLike)):
        t = read_catalog_table(table)
    elif isinstance(table, pa.Table):
        at = table
        t = Table()
        for f in at.schema:
            col = at.column(f.name)
            if pa.types.is_dictionary(f.type):
                col = col.cast(pa.string())
            vals = (np.array([("" if v is None else v) for v in col.to_pylist()], dtype=str)
                    if pa.types.is_string(col.type) else col.to_numpy(zero_copy_only=False))
            t[f.name] = vals
            unit, desc = _unit_and_description(f)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UnitsWarning)
                if unit:
                    t[f.name].unit = unit
            if desc:
                t[f.name].description = desc
    elif isinstance(table, pd.DataFrame):
        df = table.copy()
        for c in df.columns:
            if isinstance(df[c].dtype, pd.CategoricalDtype) or df[c].dtype == object:
                df[c] = df[c].astype(str)
        t = Table.from_pandas(df)
    else:
        t = Table(table, copy=True)
    for c in t.colnames:
        dt = t[c].dtype
        if dt in VOTABLE_UPCAST:
            t[c] = t[c].astype(VOTABLE_UPCAST[dt])
        elif dt.kind == "O":
            t[c] = t[c].astype(str)
    vot = from_table(t, table_id=name)
    with atomic_path(path) as tmp:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", (VOWarning, UnitsWarning))
            vot.to_xml(str(tmp))
    return Path(path)
