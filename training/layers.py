"""The two custom layers of SA-UNet: DropBlock2D and spatial attention.

Both are ordinary serialisable Keras 2 (tf_keras) layers, never `Lambda`, so a saved model
reloads without Python code objects and tensorflow-model-optimization can clone and annotate
them for quantization-aware training.
"""

from __future__ import annotations

import tensorflow as tf

from saunet.training.keras import keras


@keras.utils.register_keras_serializable(package="saunet")
class DropBlock2D(keras.layers.Layer):
    """Drops contiguous square blocks of a feature map while training; identity otherwise.

    Ghiasi, Lin, Le 2018, "DropBlock: A regularization method for convolutional networks".
    Block centres are drawn with probability `gamma` inside the region where a whole block
    fits, grown to `block_size` squares by max-pooling, and the kept activations rescaled so
    that the expected sum is unchanged. Each channel gets its own mask, as in the Keras
    implementation SA-UNet used.

    Args:
        block_size: side of a dropped square, in pixels; clipped to the feature map's size.
        keep_prob: the fraction of activations kept on average (1.0 disables the layer).
    """

    def __init__(self, block_size: int = 7, keep_prob: float = 0.9, **kwargs):
        super().__init__(**kwargs)
        if block_size < 1:
            raise ValueError(f"block_size must be at least 1, got {block_size}")
        if not 0.0 < keep_prob <= 1.0:
            raise ValueError(f"keep_prob must be in (0, 1], got {keep_prob}")
        self.block_size = int(block_size)
        self.keep_prob = float(keep_prob)

    def call(self, inputs, training=None):
        if not training or self.keep_prob >= 1.0:
            return inputs
        height, width = inputs.shape[1], inputs.shape[2]
        if height is None or width is None:
            raise ValueError("DropBlock2D needs feature maps of a known height and width")
        block = min(self.block_size, height, width)
        valid_h, valid_w = height - block + 1, width - block + 1
        gamma = (1.0 - self.keep_prob) / block**2 * (height * width) / (valid_h * valid_w)
        # Block centres only where a whole block fits, padded back to the full size.
        shape = tf.shape(inputs)
        centres = tf.cast(tf.random.uniform([shape[0], valid_h, valid_w, shape[3]]) < gamma, inputs.dtype)
        top, left = block // 2, block // 2
        centres = tf.pad(centres, [[0, 0], [top, height - valid_h - top], [left, width - valid_w - left], [0, 0]])
        dropped = tf.nn.max_pool2d(centres, ksize=block, strides=1, padding="SAME")
        keep = 1.0 - dropped
        scale = tf.cast(tf.size(keep), inputs.dtype) / tf.maximum(tf.reduce_sum(keep), 1.0)
        return inputs * keep * scale

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict:
        return {**super().get_config(), "block_size": self.block_size, "keep_prob": self.keep_prob}


@keras.utils.register_keras_serializable(package="saunet")
class ChannelPool(keras.layers.Layer):
    """Channel-wise mean and max of a feature map, stacked as two channels.

    The descriptor spatial attention convolves (Woo et al. 2018, CBAM). A layer of its own
    rather than a Lambda so that quantization can annotate its output.
    """

    def call(self, inputs):
        return tf.concat(
            [tf.reduce_mean(inputs, axis=-1, keepdims=True), tf.reduce_max(inputs, axis=-1, keepdims=True)],
            axis=-1,
        )

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (2,)


def spatial_attention(x, kernel_size: int = 7, use_bias: bool = False, name: str = "attention"):
    """Guo et al. 2020's spatial attention: x * sigmoid(conv7x7([mean_c(x), max_c(x)])).

    Built from layers (ChannelPool, Conv2D, Multiply) rather than one opaque layer, so that the
    int8 export sees ordinary ops and the attention map can be inspected by name.

    Args:
        x: the feature map to reweight.
        kernel_size: the attention convolution's size (7 in both presets).
        use_bias: the seed project's convolution has a bias, Guo et al.'s has none.
        name: prefix of the three layers' names.
    """
    pooled = ChannelPool(name=f"{name}_pool")(x)
    weights = keras.layers.Conv2D(
        1, kernel_size, padding="same", use_bias=use_bias, activation="sigmoid", name=f"{name}_map"
    )(pooled)
    return keras.layers.Multiply(name=f"{name}_apply")([x, weights])
