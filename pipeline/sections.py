"""The pydantic model configuration shared by every section of a build config.

Unknown keys are errors (a misspelt option never passes silently), and number fields refuse
NaN and infinity (YAML's ``.nan`` and ``.inf``), which no parameter of a build can take.
"""

from __future__ import annotations

from pydantic import ConfigDict

SECTION_CONFIG = ConfigDict(extra="forbid", allow_inf_nan=False)
