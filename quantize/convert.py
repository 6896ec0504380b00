"""Keras model -> TFLite bytes, one function for every format of quantize/formats.py.

Every export has batch 1 and static shapes: with a free batch dimension the converter keeps
SHAPE, PACK and STRIDED_SLICE ops to compute Conv2DTranspose's output shape, which the Edge
TPU and int8-only runtimes cannot run.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import tensorflow as tf
from tensorflow.lite.python import schema_py_generated as schema
from tensorflow.lite.tools import flatbuffer_utils

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


def convert(model: keras.Model, fmt: Format, calibration=None, scale: float = 1 / 255) -> bytes:
    """Converts a batch-1 Keras model (float, or QAT for fmt "int8") to a .tflite flatbuffer.

    `scale` is the preprocessing's pixel scale, which fixes the int8 input's range.
    """
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
        return exact_input_range(converter.convert(), scale)
    return converter.convert()


def exact_input_range(flatbuffer: bytes, scale: float) -> bytes:
    """Sets the int8 input's range to exactly what 8-bit pixels can be: [0, 255 * scale].

    Calibration and QAT learn the input range from data, e.g. [0, 0.9] when no slice reaches
    full brightness, and brighter pixels would then clip. With scale 1/255 and zero point -128
    the int8 input is the pixel value minus 128, exactly. TFLite kernels derive their
    arithmetic from tensor parameters, so this is valid where the input feeds ops that
    requantize it (CONV_2D, QUANTIZE); anything else is refused.
    """
    tree = flatbuffer_utils.convert_bytearray_to_object(bytearray(flatbuffer))
    graph = tree.subgraphs[0]
    (index,) = graph.inputs
    builtin = {i: code.builtinCode for i, code in enumerate(tree.operatorCodes)}
    consumers = {builtin[op.opcodeIndex] for op in graph.operators if index in list(op.inputs)}
    allowed = {schema.BuiltinOperator.CONV_2D, schema.BuiltinOperator.QUANTIZE}
    if not consumers <= allowed:
        raise ValueError("the model's input feeds ops that cannot take a new input range")
    quantization = graph.tensors[index].quantization
    quantization.scale = [float(np.float32(scale))]
    quantization.zeroPoint = [-128]
    quantization.min, quantization.max = [0.0], [float(255 * np.float32(scale))]
    return bytes(flatbuffer_utils.convert_object_to_bytearray(tree))
