"""The pydantic model configuration shared by every section of a build config.

Unknown keys are errors (a misspelt option never passes silently), and number fields refuse
NaN and infinity (YAML's ``.nan`` and ``.inf``), which no parameter of a build can take.
"""

from __future__ import annotations

from pydantic import ConfigDict

SECTION_CONFIG = ConfigDict(extra="forbid", allow_inf_nan=False)


def refuse(problems: list[str]) -> None:
    """Raise one ``ValueError`` holding every rule across fields a section breaks, one line
    each, ``field = value: what is allowed (why)`` (``pipeline.config`` prefixes each line
    with the file and the section); nothing when ``problems`` is empty."""
    if problems:
        raise ValueError("\n".join(problems))
