"""Capture what C code writes to file descriptor 2, and write back only what should be seen.

TensorFlow's start-up lines (:mod:`pipeline.picking.backend`) and evalresp's messages
(:mod:`pipeline.magnitude`) are printed by C code straight to descriptor 2, past Python's
logging. :func:`rewritten_stderr` sends the descriptor to a temporary file inside its block
and, on leaving (also when the block raises), writes back what a rewrite function keeps.
"""

from __future__ import annotations

import os
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

#: One capture at a time: two threads swapping descriptor 2 would leave it on a closed file.
_CAPTURE = threading.Lock()


@contextmanager
def rewritten_stderr(rewrite: Callable[[str], str]) -> Iterator[None]:
    """Capture descriptor 2 (C and Python writes alike) inside the block; on leaving, write
    back ``rewrite(captured text)`` (nothing when it returns "").

    Anything another thread writes to the descriptor meanwhile is captured too, so
    ``rewrite`` should keep what it does not recognise.
    """
    with _CAPTURE:
        sys.stderr.flush()
        saved = os.dup(2)
        try:
            with tempfile.TemporaryFile() as capture:
                os.dup2(capture.fileno(), 2)
                try:
                    yield
                finally:
                    sys.stderr.flush()
                    os.dup2(saved, 2)
                    capture.seek(0)
                    text = rewrite(capture.read().decode(errors="replace"))
                    if text:
                        sys.stderr.write(text)
                        sys.stderr.flush()
        finally:
            os.close(saved)
