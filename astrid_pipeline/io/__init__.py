"""Readers and writers for FITS, Parquet and HDF5; every write is atomic."""
