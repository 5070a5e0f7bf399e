"""TensorFlow and Keras for the picker, imported without TensorFlow's C++ start-up lines.

Importing TensorFlow 2.21 writes, straight to file descriptor 2, Abseil's notice "WARNING: All
log messages before absl::InitializeLog() is called are written to STDERR" and INFO lines
(oneDNN custom operations, "Could not find cuda drivers", the CPU-instruction note), twice;
``TF_CPP_MIN_LOG_LEVEL`` does not reach them because Abseil logging is not initialised yet
(measured: they print at every level 0–3). After the import TensorFlow honours the variable
(level 3 also hides the "failed call to cuInit" ERROR of a machine without a GPU).

So this module imports TensorFlow with descriptor 2 captured and writes back only the lines
at or above ``TF_CPP_MIN_LOG_LEVEL`` (0 INFO, 1 WARNING, 2 ERROR, 3 FATAL; TensorFlow's
meaning); anything that is not an Abseil log line is written back unchanged. Without the
variable nothing is filtered. ``eqcat`` sets it to 3 unless ``-v`` is given
(:func:`pipeline.cli.configure_logging`); processes it starts (Dask workers) inherit it.
Every picking module imports TensorFlow and Keras from here.
"""

from __future__ import annotations

import os
import re
import sys

from pipeline.native_stderr import rewritten_stderr

#: An Abseil/glog log line: severity letter, MMDD, then time (``HH:MM:SS.ffffff``; before
#: initialisation ``00:00:<epoch seconds>``), thread id, ``file:line]``.
ABSL_LINE = re.compile(r"^([IWEF])\d{4} [\d:.]+ +\d+ [^\]]+\] ")
#: Abseil's notice before the first line logged without initialisation.
ABSL_NOTICE = "WARNING: All log messages before absl::InitializeLog() is called"
#: Start of a line that is not an Abseil line's continuation: a Python log line
#: (``2000-10-06 ...``), a traceback, a ``warnings`` line (``file.py:12: UserWarning: ...``).
OTHER_RECORD = re.compile(r"^(\d{4}-\d\d-\d\d |Traceback |\S+:\d+: \w*Warning: )")
#: ``TF_CPP_MIN_LOG_LEVEL`` values of the severities.
SEVERITY_LEVEL = {"I": 0, "W": 1, "E": 2, "F": 3}


def min_log_level() -> int:
    """``TF_CPP_MIN_LOG_LEVEL`` as an int (0, the default, when unset or not a number)."""
    try:
        return int(os.environ.get("TF_CPP_MIN_LOG_LEVEL", "0"))
    except ValueError:
        return 0


def filter_absl_lines(text: str, min_level: int) -> str:
    """``text`` without the Abseil log lines under ``min_level`` (and their continuation
    lines) and, when ``min_level`` ≥ 1, without Abseil's initialisation notice; every other
    line is kept."""
    kept: list[str] = []
    keep = True
    for line in text.splitlines(keepends=True):
        match = ABSL_LINE.match(line)
        if match:
            keep = SEVERITY_LEVEL[match.group(1)] >= min_level
        elif line.startswith(ABSL_NOTICE):
            keep = min_level < 1
        elif OTHER_RECORD.match(line):
            keep = True
        if keep:
            kept.append(line)
    return "".join(kept)


def _import() -> tuple:
    import keras
    import tensorflow
    from keras import ops

    return keras, ops, tensorflow


if "tensorflow" in sys.modules or min_log_level() < 1:
    keras, ops, tf = _import()
else:
    with rewritten_stderr(lambda text: filter_absl_lines(text, min_log_level())):
        keras, ops, tf = _import()

__all__ = ["keras", "ops", "tf"]
