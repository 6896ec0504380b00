"""Export side of saunet: QAT, TFLite conversion, metadata, parity (needs TensorFlow)."""

import saunet.training  # noqa: F401  (selects Keras 2 before TensorFlow loads)
