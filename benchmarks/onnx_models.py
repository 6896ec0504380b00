"""ONNX files of a Keras model for the benchmark: float32 through tf2onnx, and int8 by ONNX Runtime's
own static quantization (QDQ), which is what a user who already works with ONNX would pick.

The int8 file is calibrated on the same inputs as the LiteRT int8 exports (training slices of the
model's split, preprocessed as the runtime does), so the two int8 rows differ by toolchain only.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from saunet.runtime.files import atomic_path


def export_float(model, path: Path, channels_first: bool = False) -> Path:
    """A batch-1 Keras model as float32 ONNX (opset 17) through tf2onnx; the input is named "image".

    `channels_first` makes the input and output NCHW, ONNX's own layout, so that a one-layer model
    is that layer alone: in NHWC, tf2onnx wraps it in two Transpose ops (which a whole model's
    graph optimisation removes between layers).
    """
    import tensorflow as tf
    import tf2onnx

    signature = (tf.TensorSpec(model.input_shape, tf.float32, name="image"),)
    layout = {"inputs_as_nchw": ["image"], "outputs_as_nchw": model.output_names} if channels_first else {}
    proto, _ = tf2onnx.convert.from_keras(model, input_signature=signature, opset=17, **layout)
    with atomic_path(path) as partial:
        partial.write_bytes(proto.SerializeToString())
    return path


class _Inputs:
    """onnxruntime.quantization's CalibrationDataReader over a list of batch-1 inputs."""

    def __init__(self, name: str, inputs: Iterable[np.ndarray]):
        self.name, self.inputs = name, iter(inputs)

    def get_next(self) -> dict | None:
        x = next(self.inputs, None)
        return None if x is None else {self.name: np.asarray(x, np.float32)}


def quantize_int8(float_path: Path, path: Path, inputs: Iterable[np.ndarray]) -> Path:
    """Static int8 quantization of a float ONNX file: QDQ format, int8 weights (per channel) and activations.

    `quant_pre_process` first (shape inference and graph clean-up, as ONNX Runtime advises), with
    symbolic shape inference skipped: the shapes are static, and it would need sympy.
    """
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    CalibrationDataReader.register(_Inputs)
    name = onnx.load(str(float_path)).graph.input[0].name
    with tempfile.TemporaryDirectory() as scratch:
        prepared = Path(scratch) / "prepared.onnx"
        quant_pre_process(str(float_path), str(prepared), skip_symbolic_shape=True)
        with atomic_path(path) as partial:
            quantize_static(
                str(prepared),
                str(partial),
                _Inputs(name, inputs),
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                activation_type=QuantType.QInt8,
                weight_type=QuantType.QInt8,
            )
    return path
