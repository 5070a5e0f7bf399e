"""Phase association: picks of many stations -> events (time-based or PyOcto).

Entry points: :func:`associate` (the stage, files in -> files out) and
:func:`associate_picks` (the same on in-memory tables); configuration in
:class:`AssociationConfig`.
"""

from pipeline.association.params import AssociationConfig, PyOctoConfig, TimeAssociatorConfig
from pipeline.association.stage import AssociationInputError, associate, associate_picks

__all__ = [
    "AssociationConfig",
    "AssociationInputError",
    "PyOctoConfig",
    "TimeAssociatorConfig",
    "associate",
    "associate_picks",
]
