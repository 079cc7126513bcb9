"""The AstrID pipeline's Definitions: every branch's folder under ``astrid_pipeline/defs/``, merged.

``dg dev``, ``dg launch`` and ``dg check defs`` find this module through ``[tool.dg]`` in pyproject.toml
(``dagster dev``/``dagster-webserver`` through ``[tool.dagster]`` or ``workspace.yaml``). Each branch keeps its
assets, checks, partitions, jobs and automation side by side in ``defs/<branch>/``; the shared resources
and the executor are in ``defs/resources.py``. Loading imports no science library.
"""

from pathlib import Path

import dagster as dg

defs = dg.load_from_defs_folder(path_within_project=Path(__file__).parent)
