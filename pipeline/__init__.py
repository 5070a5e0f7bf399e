"""eqcat: an end-to-end earthquake cataloging pipeline (library part).

Every stage is a plain function that reads files from a run directory and writes
files back into it (see ``DESIGN.md``); nothing in this package imports Prefect.
"""

__version__ = "0.1.0"
