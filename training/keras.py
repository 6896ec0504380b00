"""The one place that chooses the Keras implementation: tf_keras (Keras 2).

tensorflow-model-optimization refuses Keras 3 models, and a model trained in one Keras cannot
be quantized in the other, so every module imports `keras` from here.
"""

import tf_keras as keras

__all__ = ["keras"]
