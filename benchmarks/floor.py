"""The latency floor of a model built from its own convolutions.

Each convolution of the model (Conv2D and Conv2DTranspose, with its weights, input shape,
kernel, strides and padding) is made into a one-layer model of the same format and timed
alone through the same engine; the floor is the sum over the model's convolutions. The
convolutions are nearly all of the arithmetic, so the model's latency over its floor says
how much the rest costs (pooling, concatenation, attention, requantisation, the interpreter
between ops), on this machine, in this engine. A peak taken from one large convolution says
less: it runs at a speed this small model's layers never reach.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

import saunet.quantize  # noqa: F401  (Keras 2 before TensorFlow)
from saunet.runtime.files import atomic_path
from saunet.training.keras import keras

#: The floors the benchmark measures: (engine, number format).
VARIANTS = (("litert", "float32"), ("litert", "int8"), ("onnxruntime", "float32"), ("onnxruntime", "int8"))
#: Random inputs that calibrate a one-layer int8 model: its speed does not depend on the values.
CALIBRATION_INPUTS = 8


def conv_layers(model: keras.Model) -> tuple[list[keras.Model], list[int]]:
    """One single-layer model per distinct convolution of a batch-1 `model`, and how often each occurs.

    The activation is left out (a fused ReLU costs next to nothing; a sigmoid would be an op of
    its own and is not a convolution).
    """
    models, counts, seen = [], Counter(), {}
    for layer in model.layers:
        if not isinstance(layer, (keras.layers.Conv2D, keras.layers.Conv2DTranspose)):
            continue
        config = {**layer.get_config(), "activation": "linear"}
        key = (
            type(layer).__name__,
            tuple(layer.input.shape),
            *(str(config[k]) for k in ("filters", "kernel_size", "strides", "padding", "dilation_rate", "use_bias")),
        )
        if key not in seen:
            config["name"] = f"floor_{len(seen)}"
            inputs = keras.Input(tuple(layer.input.shape[1:]), batch_size=1)
            single = type(layer).from_config(config)
            outputs = single(inputs)
            single.set_weights(layer.get_weights())
            seen[key] = len(models)
            models.append(keras.Model(inputs, outputs, name=config["name"]))
        counts[seen[key]] += 1
    return models, [counts[i] for i in range(len(models))]


def _random_inputs(model: keras.Model, seed: int = 0):
    rng = np.random.default_rng(seed)
    return [rng.uniform(0, 1, model.input_shape).astype(np.float32) for _ in range(CALIBRATION_INPUTS)]


def to_tflite(model: keras.Model, number: str) -> bytes:
    """A one-layer model as .tflite: float32, or int8 throughout (int8 input and output) like the int8 exports."""
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if number == "int8":
        inputs = _random_inputs(model)
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([x] for x in inputs)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = converter.inference_output_type = tf.int8
    return converter.convert()


def write_floor_models(model: keras.Model, folder: Path, variants=VARIANTS) -> dict[str, list[tuple[Path, int]]]:
    """The model's convolutions as one-layer files per variant ("litert int8", ...): [(path, count)].

    A variant whose engine cannot make its files (ONNX packages missing) is left out.
    """
    from saunet.benchmarks.onnx_models import export_float, quantize_int8

    layers, counts = conv_layers(model)
    out: dict[str, list[tuple[Path, int]]] = {}
    for engine, number in variants:
        paths = []
        for single, count in zip(layers, counts):
            stem = folder / f"{single.name}_{engine}_{number}"
            if engine == "litert":
                path = stem.with_suffix(".tflite")
                with atomic_path(path) as partial:
                    partial.write_bytes(to_tflite(single, number))
            else:
                try:
                    path = export_float(single, stem.with_name(stem.name + "_float.onnx"), channels_first=True)
                    if number == "int8":
                        nchw = [x.transpose(0, 3, 1, 2) for x in _random_inputs(single)]
                        path = quantize_int8(path, stem.with_suffix(".onnx"), nchw)
                except ImportError:
                    break
            paths.append((path, count))
        else:
            out[f"{engine} {number}"] = paths
    return out
