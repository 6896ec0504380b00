"""TensorFlow's start-up chatter (oneDNN, CUDA stubs, absl's pre-init warning) kept off the terminal.

TensorFlow 2.21 writes these lines from C++ before Python's logging or TF_CPP_MIN_LOG_LEVEL can
stop all of them, and on a CPU-only machine it reports a failed cuInit as an error. They say
nothing a user can act on, so saunet's commands load TensorFlow and probe its devices with the
process's stderr pointed at /dev/null, unless --verbose asks for them. Python exceptions are
unaffected: they are raised, and printed, after stderr is restored.
"""

from __future__ import annotations

import os

from saunet.runtime.quiet import stderr_silenced


def load_tensorflow(verbose: bool) -> None:
    """Imports TensorFlow and tf-keras and lets TensorFlow look for GPUs, quietly unless `verbose`."""
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "0" if verbose else "3"
    with stderr_silenced(not verbose):
        import tensorflow as tf

        import saunet.training.keras  # noqa: F401  (tf_keras, which logs its own start-up)

        tf.config.list_physical_devices("GPU")
