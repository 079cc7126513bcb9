"""H2RG up-the-ramp science code: simulation, readers, reference pixels, and
cosmic-ray / random-telegraph-noise / snowball detection.

Plain numpy/scipy/astropy/h5py; nothing here imports Dagster. Every step
works on row blocks (all groups of a strip of rows), so a 2048x2048 ramp
never needs the whole cube in memory.
"""
