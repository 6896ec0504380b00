"""Training side of saunet: data, model, training loop, evaluation (needs TensorFlow).

tensorflow-model-optimization works only with Keras 2, so the whole training side uses
tf_keras; TF_USE_LEGACY_KERAS must be set before TensorFlow is first imported.
"""

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
