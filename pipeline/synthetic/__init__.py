"""Synthetic aftershock scenarios with ground truth (the embedded default of ``eqcat demo``).

:func:`generate_scenario` writes an SDS archive, StationXML, the stations table and the true
catalog and picks; :class:`ScenarioConfig` holds every setting; :func:`preset` gives the
``smoke`` (1 h), ``demo`` and ``replica`` (18 stations × 6 weeks) scenarios.
"""

from pipeline.synthetic.params import ScenarioConfig, preset
from pipeline.synthetic.scenario import ScenarioSummary, generate_scenario

__all__ = ["ScenarioConfig", "ScenarioSummary", "generate_scenario", "preset"]
