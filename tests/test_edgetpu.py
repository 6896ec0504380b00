"""The Edge TPU static check, rule by rule: a tiny int8 model that breaks each rule of the published
table and one that keeps it (saunet.quantize.edgetpu)."""

from __future__ import annotations  # noqa: I001  (saunet.quantize selects Keras 2 before TensorFlow)

from pathlib import Path

import numpy as np
import pytest

import saunet.quantize  # noqa: F401  (Keras 2 before TensorFlow)
import tensorflow as tf
from tensorflow.lite.python import schema_py_generated as schema
from tensorflow.lite.tools import flatbuffer_utils
from saunet.quantize.edgetpu import check_flatbuffer, static_check
from saunet.training.keras import keras

BUNDLED = Path(__file__).resolve().parents[1] / "runtime" / "models" / "saunet_int8.tflite"
RNG = np.random.default_rng(0)
FILTERS = RNG.uniform(-1, 1, (3, 3, 8, 8)).astype(np.float32)


def int8(fn, *shapes, dynamic_batch: bool = False, float_io: bool = False) -> bytes:
    """`fn` of float inputs of `shapes`, converted to a fully int8 .tflite (int8 input and output unless float_io)."""
    specs = [tf.TensorSpec([None, *s[1:]] if dynamic_batch else s, tf.float32) for s in shapes]
    converter = tf.lite.TFLiteConverter.from_concrete_functions([tf.function(fn).get_concrete_function(*specs)])
    return _quantize(converter, shapes, float_io)


def int8_keras(model: keras.Model) -> bytes:
    return _quantize(tf.lite.TFLiteConverter.from_keras_model(model), [model.input_shape], False)


def _quantize(converter, shapes, float_io: bool) -> bytes:
    rng = np.random.default_rng(1)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: (
        [rng.uniform(-1, 1, s).astype(np.float32) for s in shapes] for _ in range(4)
    )
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    if not float_io:
        converter.inference_input_type = converter.inference_output_type = tf.int8
    return converter.convert()


def patched(flatbuffer: bytes, op: str, **fields) -> bytes:
    """The model with builtin-option fields of its first `op` set (forms the converter never writes)."""
    tree = flatbuffer_utils.convert_bytearray_to_object(bytearray(flatbuffer))
    code = getattr(schema.BuiltinOperator, op)
    graph = tree.subgraphs[0]
    target = next(
        o
        for o in graph.operators
        if max(tree.operatorCodes[o.opcodeIndex].builtinCode, tree.operatorCodes[o.opcodeIndex].deprecatedBuiltinCode)
        == code
    )
    for name, value in fields.items():
        setattr(target.builtinOptions, name, value)
    return bytes(flatbuffer_utils.convert_object_to_bytearray(tree))


def reasons(flatbuffer: bytes, op: str) -> list[str]:
    """The reasons the check gives against every `op` of the model (the op must be there)."""
    found = [o for o in check_flatbuffer(flatbuffer)["ops"] if o["op"] == op]
    assert found, f"the converter made no {op}"
    return [r for o in found for r in o["reasons"]]


def conv(dilations, depthwise=False):
    def fn(x):
        if depthwise:
            return tf.raw_ops.DepthwiseConv2dNative(
                input=x, filter=FILTERS[:, :, :, :1], strides=[1, 1, 1, 1], padding="SAME", dilations=[1, *dilations, 1]
            )
        return tf.nn.conv2d(x, FILTERS, 1, "SAME", dilations=[1, *dilations, 1])

    return fn


X = (1, 4, 4, 8)
BATCH = (2, 4, 8)  # a batch of 2 in a 3-D tensor: only the batch rule of the op is broken

CASES = {
    # rule: (breaking model, op, expected reason), (keeping model, op)
    "operation table": (
        (lambda: int8(lambda x: tf.nn.leaky_relu(x, 0.2), X), "LEAKY_RELU", "not in the Edge TPU"),
        (lambda: int8(tf.nn.relu6, X), "RELU6"),
    ),
    "int8 tensors": (
        (lambda: int8(tf.nn.relu6, X, float_io=True), "QUANTIZE", "is float32, not 8-bit"),
        (lambda: int8(tf.nn.relu6, X), "RELU6"),
    ),
    "static shapes": (
        (lambda: int8(tf.nn.relu6, X, dynamic_batch=True), "RELU6", "dynamic shape"),
        (lambda: int8(tf.nn.relu6, X), "RELU6"),
    ),
    "3 innermost dimensions": (
        (lambda: int8(tf.nn.relu6, (2, 4, 4, 8)), "RELU6", "only the 3 innermost"),
        (lambda: int8(tf.nn.relu6, X), "RELU6"),
    ),
    "MEAN batch": (
        (lambda: int8(lambda x: tf.reduce_mean(x, 0, keepdims=True), BATCH), "MEAN", "batch dimension"),
        (lambda: int8(lambda x: tf.reduce_mean(x, [1, 2], keepdims=True), X), "MEAN"),
    ),
    "MEAN z depth": (
        (
            lambda: int8(lambda x: tf.reduce_mean(x, -1, keepdims=True), (1, 4, 4, 6)),
            "MEAN",
            "depth 6, not a multiple of 4",
        ),
        (lambda: int8(lambda x: tf.reduce_mean(x, -1, keepdims=True), X), "MEAN"),
    ),
    "REDUCE_MAX": (
        (lambda: int8(lambda x: tf.reduce_max(x, 0, keepdims=True), BATCH), "REDUCE_MAX", "operates on the batch"),
        (lambda: int8(lambda x: tf.reduce_max(x, -1, keepdims=True), (1, 4, 4, 6)), "REDUCE_MAX"),
    ),
    "REDUCE_MIN": (
        (lambda: int8(lambda x: tf.reduce_min(x, 0, keepdims=True), BATCH), "REDUCE_MIN", "operates on the batch"),
        (lambda: int8(lambda x: tf.reduce_min(x, -1, keepdims=True), (1, 4, 4, 6)), "REDUCE_MIN"),
    ),
    "SUM": (
        (lambda: int8(lambda x: tf.reduce_sum(x, 0, keepdims=True), BATCH), "SUM", "operates on the batch"),
        (lambda: int8(lambda x: tf.reduce_sum(x, -1, keepdims=True), (1, 4, 4, 6)), "SUM"),
    ),
    "CONCATENATION activation": (
        (
            lambda: patched(
                int8(lambda x, y: tf.concat([x, y], -1), X, X),
                "CONCATENATION",
                fusedActivationFunction=schema.ActivationFunctionType.RELU,
            ),
            "CONCATENATION",
            "fused activation",
        ),
        (lambda: int8(lambda x, y: tf.concat([x, y], -1), X, X), "CONCATENATION"),
    ),
    "CONCATENATION non-zero constant": (
        (lambda: int8(lambda x: tf.concat([x, tf.fill((1, 4, 4, 4), 0.5)], -1), X), "CONCATENATION", "constant input"),
        (lambda: int8(lambda x: tf.concat([x, tf.zeros((1, 4, 4, 4))], -1), X), "CONCATENATION"),
    ),
    "CONCATENATION zero constant of 3 inputs": (
        (
            lambda: int8(lambda x, y: tf.concat([x, tf.zeros((1, 4, 4, 4)), y], -1), X, X),
            "CONCATENATION",
            "constant input",
        ),
        (lambda: int8(lambda x: tf.concat([tf.zeros((1, 4, 4, 4)), x], -1), X), "CONCATENATION"),
    ),
    "CONV_2D dilation": (
        (lambda: int8(conv((2, 1)), X), "CONV_2D", "same dilation in x and y"),
        (lambda: int8(conv((2, 2)), X), "CONV_2D"),
    ),
    "DEPTHWISE_CONV_2D dilation": (
        (lambda: int8(conv((1, 2), True), X), "DEPTHWISE_CONV_2D", "same dilation"),
        (lambda: int8(conv((2, 2), True), X), "DEPTHWISE_CONV_2D"),
    ),
    "MAX_POOL_2D activation": (
        (
            lambda: patched(
                int8(lambda x: tf.nn.max_pool2d(x, 2, 2, "VALID"), X),
                "MAX_POOL_2D",
                fusedActivationFunction=schema.ActivationFunctionType.RELU,
            ),
            "MAX_POOL_2D",
            "fused",
        ),
        (lambda: int8(lambda x: tf.nn.max_pool2d(x, 2, 2, "VALID"), X), "MAX_POOL_2D"),
    ),
    "AVERAGE_POOL_2D activation": (
        (
            lambda: patched(
                int8(lambda x: tf.nn.avg_pool2d(x, 2, 2, "VALID"), X),
                "AVERAGE_POOL_2D",
                fusedActivationFunction=schema.ActivationFunctionType.RELU6,
            ),
            "AVERAGE_POOL_2D",
            "fused",
        ),
        (lambda: int8(lambda x: tf.nn.avg_pool2d(x, 2, 2, "VALID"), X), "AVERAGE_POOL_2D"),
    ),
    "PACK": (
        (lambda: int8(lambda x, y: tf.stack([x, y], 0), (4, 8), (4, 8)), "PACK", "packs in the batch"),
        (lambda: int8(lambda x, y: tf.stack([x, y], -1), (4, 8), (4, 8)), "PACK"),
    ),
    "PAD": (
        (lambda: int8(lambda x: tf.pad(x, [[1, 0], [0, 0], [0, 0]]), BATCH), "PAD", "pads the batch"),
        (lambda: int8(lambda x: tf.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]]), X), "PAD"),
    ),
    "SPLIT": (
        (lambda: int8(lambda x: tuple(tf.split(x, 2, 0)), BATCH), "SPLIT", "splits in the batch"),
        (lambda: int8(lambda x: tuple(tf.split(x, 2, -1)), X), "SPLIT"),
    ),
    "STRIDED_SLICE": (
        (lambda: int8(lambda x: x[:, ::2], X), "STRIDED_SLICE", "strides other than 1"),
        (lambda: int8(lambda x: x[:, 1:3, :, ::1] + 0, X), "STRIDED_SLICE"),
    ),
    "SOFTMAX 1-D": (
        (lambda: int8(tf.nn.softmax, (1, 4, 8)), "SOFTMAX", "is not 1-D"),
        (lambda: int8(tf.nn.softmax, (1, 16)), "SOFTMAX"),
    ),
    "SOFTMAX 16,000 elements": (
        (lambda: int8(tf.nn.softmax, (1, 16001)), "SOFTMAX", "more than 16,000"),
        (lambda: int8(tf.nn.softmax, (1, 16000)), "SOFTMAX"),
    ),
    "FULLY_CONNECTED output": (
        (lambda: int8(lambda x: tf.matmul(x, FILTERS[0, 0]), (3, 8)), "FULLY_CONNECTED", "not one-dimensional"),
        (lambda: int8(lambda x: tf.matmul(x, FILTERS[0, 0]), (1, 8)), "FULLY_CONNECTED"),
    ),
    "FULLY_CONNECTED weights format": (
        (
            lambda: patched(
                int8(lambda x: tf.matmul(x, FILTERS[0, 0]), (1, 8)),
                "FULLY_CONNECTED",
                weightsFormat=schema.FullyConnectedOptionsWeightsFormat.SHUFFLED4x16INT8,
            ),
            "FULLY_CONNECTED",
            "format other than the default",
        ),
        (lambda: int8(lambda x: tf.matmul(x, FILTERS[0, 0]), (1, 8)), "FULLY_CONNECTED"),
    ),
    "PRELU alpha": (
        (
            lambda: int8_keras(
                keras.Sequential(
                    [
                        keras.Input(X[1:], batch_size=1),
                        keras.layers.PReLU(alpha_initializer=keras.initializers.RandomUniform(0.1, 0.3)),
                    ]
                )
            ),
            "PRELU",
            "not 1-dimensional",
        ),
        (
            lambda: int8_keras(
                keras.Sequential(
                    [
                        keras.Input(X[1:], batch_size=1),
                        keras.layers.PReLU(
                            alpha_initializer=keras.initializers.RandomUniform(0.1, 0.3), shared_axes=[1, 2]
                        ),
                    ]
                )
            ),
            "PRELU",
        ),
    ),
}


@pytest.mark.parametrize("rule", CASES)
def test_a_model_that_breaks_the_rule_is_refused(rule: str) -> None:
    (make, op, reason), _ = CASES[rule]
    found = reasons(make(), op)
    assert any(reason in r for r in found), (rule, found)


@pytest.mark.parametrize("rule", CASES)
def test_a_model_that_keeps_the_rule_passes(rule: str) -> None:
    _, (make, op) = CASES[rule]
    report = check_flatbuffer(make())
    assert report["unsupported"] == [], (rule, report["unsupported"])
    assert report["ops_before_first_unsupported"] == report["ops_total"]
    assert op in {o["op"] for o in report["ops"]}


def test_ops_after_the_first_refused_one_are_not_counted_as_mapped() -> None:
    report = check_flatbuffer(int8(lambda x: tf.nn.relu6(tf.nn.leaky_relu(tf.nn.relu6(x) * 2, 0.2)) * 2, X))
    names = [o["op"] for o in report["ops"]]
    first = names.index("LEAKY_RELU")
    assert report["ops_before_first_unsupported"] == first
    assert all(o["supported"] for o in report["ops"][:first]) and report["ops"][-1]["supported"]


def test_size_dependent_limits_are_notes_not_failures() -> None:
    report = check_flatbuffer(int8(lambda x: tf.image.resize(x, (8, 8)), X))
    assert report["unsupported"] == []
    assert any(op == "RESIZE_BILINEAR" and "depending on input/output size" in note for op, note in report["notes"])
    assert any("#686" in text for text in report["beyond_the_table"])


def test_the_bundled_model_keeps_every_rule_of_the_table() -> None:
    report = static_check(BUNDLED)
    assert report["unsupported"] == [], report["unsupported"]
    ops = {o["op"] for o in report["ops"]}
    assert {"MEAN", "REDUCE_MAX", "TRANSPOSE_CONV"} <= ops, "the attention's channel reductions are checked"
