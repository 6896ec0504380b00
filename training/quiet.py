"""TensorFlow's start-up chatter (oneDNN, CUDA stubs, absl's pre-init warning) kept off the terminal.

TensorFlow 2.21 writes these lines from C++ before Python's logging or TF_CPP_MIN_LOG_LEVEL can
stop all of them, and on a CPU-only machine it reports a failed cuInit as an error. They say
nothing a user can act on, so saunet's commands load TensorFlow and probe its devices with the
process's stderr pointed at /dev/null, unless --verbose asks for them. Python exceptions are
unaffected: they are raised, and printed, after stderr is restored.
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


def load_tensorflow(verbose: bool) -> None:
    """Imports TensorFlow and tf-keras and lets TensorFlow look for GPUs, quietly unless `verbose`."""
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "0" if verbose else "3"
    with stderr_silenced(not verbose):
        import tensorflow as tf

        import saunet.training.keras  # noqa: F401  (tf_keras, which logs its own start-up)

        tf.config.list_physical_devices("GPU")
