"""Keras model -> TFLite bytes, one function for every format of quantize/formats.py.

Every export has batch 1 and static shapes: with a free batch dimension the converter keeps
SHAPE, PACK and STRIDED_SLICE ops to compute Conv2DTranspose's output shape, which the Edge
TPU and int8-only runtimes cannot run.
"""
from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import tensorflow as tf

from saunet.quantize.formats import Format
from saunet.training.keras import keras


def representative(images: np.ndarray, scale: float, count: int = 200, seed: int = 0):
    """Calibration inputs: up to `count` training slices, scaled as the runtime scales them."""
    rng = np.random.default_rng(seed)
    chosen = images[rng.permutation(len(images))[:count]]

    def generate() -> Iterator[list[np.ndarray]]:
        for image in chosen:
            yield [image[None].astype(np.float32) * np.float32(scale)]

    return generate


def convert(model: keras.Model, fmt: Format, calibration=None) -> bytes:
    """Converts a batch-1 Keras model (float, or QAT for fmt "int8") to a .tflite flatbuffer."""
    if model.input_shape[0] != 1:
        raise ValueError("convert a batch-1 model (static shapes)")
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if fmt.name == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif fmt.name == "dynamic":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    elif fmt.integer_io:
        if calibration is None:
            raise ValueError(f"{fmt.name} needs calibration data")
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = calibration
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    return converter.convert()
