"""Operation counts from a model's graph (the GOP/s column; the floor each row is read against is
saunet.benchmarks.floor's)."""

from __future__ import annotations

import saunet.quantize  # noqa: F401  (Keras 2 before TensorFlow)
from saunet.training.keras import keras


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
