"""Operation counts from a model's graph, and the big-convolution models that measure a machine's peak.

GOP/s only means something against what the same interpreter reaches on the same machine:
one large 3x3 convolution (float32, and int8 like the int8 exports) is as close to the
arithmetic peak as a real model gets, so each row's GOP/s is also shown as a fraction of it.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

import saunet.quantize  # noqa: F401  (Keras 2 before TensorFlow)
import tensorflow as tf

from saunet.runtime.files import atomic_path
from saunet.training.keras import keras

#: The peak model: a 3x3 convolution, 128 to 128 channels, on a 64x64 map (1.21 GOP).
PEAK_SIDE, PEAK_CHANNELS, PEAK_KERNEL = 64, 128, 3


def count_ops(model: keras.Model) -> float:
    """Operations of one forward pass, in GOP: 2 per multiply-add of every (transposed) convolution.

    Convolutions are over 99% of SA-UNet's arithmetic; pooling, the attention's channel mean
    and max, its product, activations and BatchNorm (folded in the exports) are not counted.
    """
    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2DTranspose):
            _, height, width, _ = layer.input.shape
            kh, kw, filters, channels = layer.kernel.shape
            total += 2 * height * width * kh * kw * filters * channels
        elif isinstance(layer, keras.layers.Conv2D):
            _, height, width, _ = layer.output.shape
            kh, kw, channels, filters = layer.kernel.shape
            total += 2 * height * width * kh * kw * channels * filters
    return total / 1e9


def peak_model() -> keras.Model:
    inputs = keras.Input((PEAK_SIDE, PEAK_SIDE, PEAK_CHANNELS), batch_size=1)
    outputs = keras.layers.Conv2D(PEAK_CHANNELS, PEAK_KERNEL, padding="same", activation="relu")(inputs)
    return keras.Model(inputs, outputs, name="peak_conv")


def write_peak_models(folder: Path) -> tuple[dict[str, Path], float]:
    """The peak convolution as float32 and full-int8 .tflite files in `folder`, and its GOP."""
    model = peak_model()
    rng = np.random.default_rng(0)

    def calibration():
        for _ in range(8):
            yield [rng.uniform(0, 1, (1, PEAK_SIDE, PEAK_SIDE, PEAK_CHANNELS)).astype(np.float32)]

    paths = {}
    for name in ("float32", "int8"):
        converter = tf.lite.TFLiteConverter.from_keras_model(model)
        if name == "int8":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.representative_dataset = calibration
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            converter.inference_input_type = converter.inference_output_type = tf.int8
        paths[name] = folder / f"peak_conv_{name}.tflite"
        with atomic_path(paths[name]) as partial:
            partial.write_bytes(converter.convert())
    return paths, count_ops(model)
