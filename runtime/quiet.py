"""Native libraries' chatter kept off the terminal.

TensorFlow and LiteRT write start-up lines from C++ straight to file descriptor 2 (for example
LiteRT's "INFO: Created TensorFlow Lite XNNPACK delegate for CPU." for every model it loads),
beside the one-line messages saunet promises its users. Python exceptions are unaffected: they
are raised after the descriptor is restored.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def stderr_silenced(enabled: bool = True) -> Iterator[None]:
    """Points file descriptor 2 at /dev/null for the duration (C++ writes go there too)."""
    if not enabled:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
