"""Coral Edge TPU readiness: edgetpu_compiler when installed, else a static check against the published table.

The static check reads the int8 .tflite itself (ops in execution order, their options, tensor
types, shapes and constant values) and applies, op by op, the model requirements and the
operation table of coral.ai's "TensorFlow models on the Edge TPU" as they are written there
(the same text as the ARTPEC-7 table on developer.axis.com). The compiler maps ops up to the
first one it cannot run; that op and everything after it run on the CPU.

It is a check against the published table, not a compile. The table leaves some limits
unquantified (Reshape and the resize ops "might not be mapped" for some sizes); those are
reported as notes, not failures. And the compiler is known to refuse more than the table
says: see BEYOND_THE_TABLE.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tensorflow.lite.python import schema_py_generated as schema
from tensorflow.lite.tools import flatbuffer_utils

#: What edgetpu_compiler is reported to refuse although the table allows it (google-coral/edgetpu issues).
BEYOND_THE_TABLE = (
    "A large TRANSPOSE_CONV was reported left unmapped (google-coral/edgetpu #686), and RESIZE_BILINEAR is "
    "mapped or not depending on its sizes (the table says so without numbers).",
    "A MEAN over 3 channels (not a multiple of 4) stayed on the CPU (google-coral/edgetpu #461).",
    "The compiler refuses an op whose quantised precision loss it judges too high (google-coral/edgetpu #31).",
)
CHECK = "static: the published Edge TPU operation table (coral.ai), not a compile"

_OP_NAMES = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
_TYPE_NAMES = {v: k for k, v in vars(schema.TensorType).items() if not k.startswith("_")}
_NUMPY = {
    "INT8": np.int8,
    "UINT8": np.uint8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
    "FLOAT16": np.float16,
    "FLOAT32": np.float32,
    "FLOAT64": np.float64,
    "BOOL": np.bool_,
}
#: Tensor types the Edge TPU computes with: 8-bit fixed point.
QUANTIZED = {"INT8", "UINT8"}
#: Constant inputs of other types that a quantised model carries: biases, axes, shapes, paddings.
CONSTANT_INT = {"INT32"}


@dataclass
class Op:
    """One op of the model, with what its rule needs to read."""

    index: int
    name: str
    inputs: list[int]
    outputs: list[int]
    options: object
    graph: _Graph

    def shape(self, tensor: int) -> list[int]:
        return self.graph.shape(tensor)

    def constant(self, tensor: int) -> np.ndarray | None:
        return self.graph.constant(tensor)


class _Graph:
    """The first subgraph of a .tflite flatbuffer: tensors, constants and ops."""

    def __init__(self, flatbuffer: bytes):
        self.model = flatbuffer_utils.convert_bytearray_to_object(bytearray(flatbuffer))
        self.subgraph = self.model.subgraphs[0]
        self.tensors = self.subgraph.tensors

    def shape(self, tensor: int) -> list[int]:
        shape = self.tensors[tensor].shape
        return [] if shape is None else [int(d) for d in shape]

    def type_name(self, tensor: int) -> str:
        return _TYPE_NAMES.get(self.tensors[tensor].type, str(self.tensors[tensor].type))

    def is_constant(self, tensor: int) -> bool:
        data = self.model.buffers[self.tensors[tensor].buffer].data
        return data is not None and len(data) > 0

    def constant(self, tensor: int) -> np.ndarray | None:
        """The value of a constant tensor as stored (quantised values for int8), else None."""
        if not self.is_constant(tensor):
            return None
        data = bytes(bytearray(self.model.buffers[self.tensors[tensor].buffer].data))
        return np.frombuffer(data, _NUMPY[self.type_name(tensor)]).reshape(self.shape(tensor))

    def real_zero(self, tensor: int) -> bool:
        """Whether a constant tensor's real (dequantised) values are all zero."""
        value = self.constant(tensor)
        quantization = self.tensors[tensor].quantization
        zero = 0 if quantization is None or quantization.zeroPoint is None else np.asarray(quantization.zeroPoint)
        if np.ndim(zero) and np.size(zero) > 1:
            axis = quantization.quantizedDimension
            zero = np.expand_dims(zero, [d for d in range(value.ndim) if d != axis])
        return bool(np.all(value.astype(np.int64) == zero))

    def ops(self) -> list[Op]:
        codes = self.model.operatorCodes
        out = []
        for index, op in enumerate(self.subgraph.operators):
            code = codes[op.opcodeIndex]
            builtin = max(code.builtinCode, code.deprecatedBuiltinCode)
            name = code.customCode.decode() if builtin == schema.BuiltinOperator.CUSTOM else _OP_NAMES[builtin]
            tensors = [int(t) for t in (op.inputs if op.inputs is not None else [])]
            outputs = [int(t) for t in (op.outputs if op.outputs is not None else [])]
            out.append(Op(index, name, tensors, outputs, op.builtinOptions, self))
        return out


def _axes(op: Op, tensor: int, axes_input: int) -> set[int]:
    rank = len(op.shape(tensor))
    return {int(a) % rank for a in np.ravel(op.constant(axes_input))}


def _fused(op: Op) -> list[str]:
    activation = getattr(op.options, "fusedActivationFunction", 0)
    return ["has a fused activation function; the table allows none"] if activation else []


def _dilation(op: Op) -> list[str]:
    h, w = op.options.dilationHFactor, op.options.dilationWFactor
    return [] if h == w else [f"dilation {h} in y and {w} in x; the table needs the same dilation in x and y"]


def _mean(op: Op) -> list[str]:
    shape = op.shape(op.inputs[0])
    axes, reasons = _axes(op, op.inputs[0], op.inputs[1]), []
    if len(shape) >= 2 and 0 in axes:
        reasons.append("reduces the batch dimension")
    if len(shape) >= 3 and len(shape) - 1 in axes and shape[-1] % 4:
        reasons.append(f"reduces z (channels) of depth {shape[-1]}, not a multiple of 4")
    return reasons


def _not_batch_axis(op: Op) -> list[str]:
    shape = op.shape(op.inputs[0])
    return ["operates on the batch dimension"] if len(shape) >= 2 and 0 in _axes(op, op.inputs[0], op.inputs[1]) else []


def _concatenation(op: Op) -> list[str]:
    reasons = _fused(op)
    constants = [t for t in op.inputs if op.graph.is_constant(t)]
    if constants and (len(op.inputs) != 2 or not all(op.graph.real_zero(t) for t in constants)):
        reasons.append("has a constant input other than an all-zero one of exactly 2 inputs")
    return reasons


def _pack(op: Op) -> list[str]:
    return ["packs in the batch dimension"] if op.options.axis % len(op.shape(op.outputs[0])) == 0 else []


def _pad(op: Op) -> list[str]:
    paddings = op.constant(op.inputs[1])
    if paddings is None:
        return ["has paddings that are not constant"]
    return ["pads the batch dimension"] if np.any(paddings[0] != 0) else []


def _split(op: Op) -> list[str]:
    axis = int(np.ravel(op.constant(op.inputs[0]))[0]) % len(op.shape(op.inputs[1]))
    return ["splits in the batch dimension"] if axis == 0 else []


def _strided_slice(op: Op) -> list[str]:
    reasons = []
    strides = op.constant(op.inputs[3])
    if strides is None or np.any(strides != 1):
        reasons.append("has strides other than 1")
    if op.options.ellipsisMask or op.options.newAxisMask:
        reasons.append("has an ellipsis or new-axis mask")
    return reasons


def _softmax(op: Op) -> list[str]:
    shape = op.shape(op.inputs[0])
    reasons = []
    if sum(d > 1 for d in shape) > 1:
        reasons.append(f"input {shape} is not 1-D")
    if int(np.prod(shape)) > 16000:
        reasons.append(f"input has {int(np.prod(shape))} elements, more than 16,000")
    return reasons


def _fully_connected(op: Op) -> list[str]:
    reasons = []
    if op.options.weightsFormat != schema.FullyConnectedOptionsWeightsFormat.DEFAULT:
        reasons.append("has weights in a format other than the default")
    if sum(d > 1 for d in op.shape(op.outputs[0])) > 1:
        reasons.append(f"output {op.shape(op.outputs[0])} is not one-dimensional")
    return reasons


def _prelu(op: Op) -> list[str]:
    alpha = op.shape(op.inputs[1])
    return [] if all(d == 1 for d in alpha[:-1]) else [f"alpha {alpha} is not 1-dimensional"]


def _none(op: Op) -> list[str]:
    return []


#: The published table: op -> its constraint, as written ("none" where the table lists none).
TABLE: dict[str, Callable[[Op], list[str]]] = {
    "ADD": _none,
    "AVERAGE_POOL_2D": _fused,
    "CONCATENATION": _concatenation,
    "CONV_2D": _dilation,
    "DEPTHWISE_CONV_2D": _dilation,
    "EXPAND_DIMS": _none,
    "FULLY_CONNECTED": _fully_connected,
    "L2_NORMALIZATION": _none,
    "LOGISTIC": _none,
    "LSTM": _none,
    "UNIDIRECTIONAL_SEQUENCE_LSTM": _none,
    "MAXIMUM": _none,
    "MAX_POOL_2D": _fused,
    "MEAN": _mean,
    "MINIMUM": _none,
    "MUL": _none,
    "PACK": _pack,
    "PAD": _pad,
    "PRELU": _prelu,
    "QUANTIZE": _none,
    "REDUCE_MAX": _not_batch_axis,
    "REDUCE_MIN": _not_batch_axis,
    "RELU": _none,
    "RELU6": _none,
    "RELU_N1_TO_1": _none,
    "RESHAPE": _none,
    "RESIZE_BILINEAR": _none,
    "RESIZE_NEAREST_NEIGHBOR": _none,
    "RSQRT": _none,
    "SLICE": _none,
    "SOFTMAX": _softmax,
    "SPACE_TO_DEPTH": _none,
    "SPLIT": _split,
    "SQUARED_DIFFERENCE": _none,
    "SQUEEZE": _none,
    "STRIDED_SLICE": _strided_slice,
    "SUB": _none,
    "SUM": _not_batch_axis,
    "TANH": _none,
    "TRANSPOSE": _none,
    "TRANSPOSE_CONV": _none,
}
#: The table's limits that depend on sizes it does not give: reported, never counted as failures.
NOTES = {
    "RESHAPE": "certain reshapes might not be mapped for large tensor sizes (the table)",
    "RESIZE_BILINEAR": "might not be mapped, depending on input/output size (the table)",
    "RESIZE_NEAREST_NEIGHBOR": "might not be mapped, depending on input/output size (the table)",
    "TRANSPOSE_CONV": "a large one was reported unmapped by the compiler (google-coral/edgetpu #686)",
}


def model_requirements(op: Op) -> list[str]:
    """The table's model requirements, for the tensors this op reads and writes.

    8-bit quantised tensors (constants may also be int32: biases, axes, shapes); sizes fixed
    at compile time; at most 3 dimensions larger than 1, the innermost ones (for the tensors
    that flow between ops: a convolution's filter is 4-D by nature).
    """
    graph, reasons = op.graph, []
    for tensor in [t for t in op.inputs if t >= 0] + op.outputs:
        kind, name = graph.type_name(tensor), graph.tensors[tensor].name.decode()
        allowed = QUANTIZED | (CONSTANT_INT if graph.is_constant(tensor) else set())
        if kind not in allowed:
            reasons.append(f"tensor {name} is {kind.lower()}, not 8-bit quantised")
        signature = graph.tensors[tensor].shapeSignature
        if signature is not None and any(int(d) < 0 for d in signature):
            reasons.append(f"tensor {name} has a dynamic shape {[int(d) for d in signature]}")
        shape = graph.shape(tensor)
        if not graph.is_constant(tensor) and len(shape) > 3 and any(d > 1 for d in shape[:-3]):
            reasons.append(f"tensor {name} has shape {shape}; only the 3 innermost dimensions may exceed 1")
    return list(dict.fromkeys(reasons))


def check_flatbuffer(flatbuffer: bytes) -> dict:
    """Each op of a .tflite model against the published table, in execution order."""
    ops, first_unsupported = [], None
    for op in _Graph(flatbuffer).ops():
        if op.name not in TABLE:
            reasons = ["not in the Edge TPU's operation table"]
        else:
            reasons = model_requirements(op) + TABLE[op.name](op)
        if reasons and first_unsupported is None:
            first_unsupported = op.index
        ops.append(
            {"index": op.index, "op": op.name, "supported": not reasons, "reasons": reasons, "note": NOTES.get(op.name)}
        )
    mapped = len(ops) if first_unsupported is None else first_unsupported
    return {
        "check": CHECK,
        "ops": ops,
        "ops_before_first_unsupported": mapped,
        "ops_total": len(ops),
        "unsupported": sorted({(o["op"], r) for o in ops for r in o["reasons"]}),
        "notes": sorted({(o["op"], o["note"]) for o in ops if o["note"]}),
        "beyond_the_table": list(BEYOND_THE_TABLE),
    }


def static_check(path: Path) -> dict:
    """The .tflite file at `path` against the published table (see check_flatbuffer)."""
    return check_flatbuffer(Path(path).read_bytes())


def compile_or_check(path: Path) -> dict:
    """Runs edgetpu_compiler if it is on PATH; otherwise says so and returns the static check."""
    compiler = shutil.which("edgetpu_compiler")
    if compiler is None:
        return {"compiler": None, "note": "edgetpu_compiler is not on PATH (x86-64 Linux only)", **static_check(path)}
    result = subprocess.run([compiler, "-s", "-o", str(path.parent), str(path)], capture_output=True, text=True)
    return {"compiler": compiler, "returncode": result.returncode, "log": result.stdout + result.stderr}


def summary(report: dict) -> str:
    """A few lines for the terminal."""
    if report.get("compiler"):
        return report["log"]
    mapped, total = report["ops_before_first_unsupported"], report["ops_total"]
    lines = [
        f"Edge TPU: {report['note']}; {report['check']}:",
        f"  the table allows all {total} ops."
        if mapped == total
        else f"  {mapped} of {total} ops come before the first op the table does not allow; from there on, "
        "every op would run on the CPU.",
    ]
    lines += [f"  not allowed: {op} ({reason})" for op, reason in report["unsupported"]]
    lines += [f"  note: {op} {note}" for op, note in report["notes"]]
    lines += [f"  beyond the table: {text}" for text in report["beyond_the_table"]]
    return "\n".join(lines)
