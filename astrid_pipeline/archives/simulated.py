"""The built-in simulated survey as an archive client."""

from __future__ import annotations

from dataclasses import replace

from astrid_pipeline.archives.base import ArchivePair
from astrid_pipeline.regions import Region
from astrid_pipeline.science.skysim import SurveyConfig, simulate_pair


class SimulatedSurvey:
    """Deterministic science/reference pairs for any region (see :mod:`astrid_pipeline.science.skysim`)."""

    def __init__(self, config: SurveyConfig | None = None):
        self.config = (config or SurveyConfig()).validate()

    def fetch_pair(self, region: Region) -> ArchivePair:
        cfg = self.config
        pair = simulate_pair(region.ra, region.dec, region.name, cfg)
        src = f"simulated-survey:{region.name}:seed={cfg.seed}"
        return ArchivePair(
            science=pair.science, reference=pair.reference,
            science_source=src + ":science", reference_source=src + ":reference",
            truth=pair.truth, cosmic_rays=pair.cosmic_rays,
            provenance={"archive": "simulated", **{k: v for k, v in pair.meta.items() if k != "config"}},
        )

    def with_shape(self, size: int) -> "SimulatedSurvey":
        return SimulatedSurvey(replace(self.config, shape=(size, size)))
