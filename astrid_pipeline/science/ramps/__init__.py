"""H2RG up-the-ramp science code: simulation, readers, reference pixels, and
cosmic-ray / random-telegraph-noise / snowball detection.

- :mod:`.config`: the simulation (ohana's creator-config keys plus detector
  physics) and detection settings, each a dataclass field with its description;
- :mod:`.simulate`: physical ramps (outputs with their own noise and offsets,
  1/f noise along rows, 3x3 IPC, reference pixels) with their truth;
- :mod:`.readers`: JWST uncal, HST WFC3/IR IMA, FITS cubes, HDF5;
- :mod:`.refpix`, :mod:`.prepare`: reference-pixel correction and the noise
  measured from the data (per readout output);
- :mod:`.jumps` (GLS step test), :mod:`.rtn`, :mod:`.snowballs`, :mod:`.detect`;
- :mod:`.outputs` (mask.h5, prediction_mask.npy, detections.json, Parquet),
  :mod:`.jwst_dq` (GROUPDQ / PIXELDQ), :mod:`.peer_stcal` (stcal as a peer),
  :mod:`.metrics` (scores against the truth).

Plain numpy/scipy/astropy/h5py; nothing here imports Dagster or knows the
data layout, and nothing reads a packaged file by itself (callers pass
paths; :mod:`astrid_pipeline.presets` knows where the packaged ones are).
Every step works on row blocks (all groups of a strip of rows), so a
2048x2048 ramp never needs the whole cube in memory.
"""
