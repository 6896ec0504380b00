"""Coral Edge TPU readiness: edgetpu_compiler when installed, else a static check of the ops.

The static check compares the int8 model's ops, in execution order, with the Edge TPU's
published list of supported operations and their constraints (coral.ai, "TensorFlow models
on the Edge TPU"). The compiler maps ops up to the first unsupported one; everything from
there on runs on the CPU.
"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

SUPPORTED = {
    "ADD", "AVERAGE_POOL_2D", "CONCATENATION", "CONV_2D", "DEPTHWISE_CONV_2D", "DEQUANTIZE", "EXPAND_DIMS",
    "FULLY_CONNECTED", "L2_NORMALIZATION", "LOGISTIC", "LSTM", "MAXIMUM", "MAX_POOL_2D", "MEAN", "MINIMUM",
    "MUL", "PACK", "PAD", "PRELU", "QUANTIZE", "REDUCE_MAX", "REDUCE_MIN", "RELU", "RELU6", "RELU_N1_TO_1",
    "RESHAPE", "RESIZE_BILINEAR", "RESIZE_NEAREST_NEIGHBOR", "RSQRT", "SLICE", "SOFTMAX", "SPACE_TO_DEPTH",
    "SPLIT", "SQUARED_DIFFERENCE", "SQUEEZE", "STRIDED_SLICE", "SUB", "SUM", "TANH", "TRANSPOSE",
    "TRANSPOSE_CONV",
}
#: Reductions the Edge TPU runs only over the x and y axes, not over channels or batch.
SPATIAL_REDUCTIONS = {"MEAN", "REDUCE_MAX", "REDUCE_MIN", "SUM"}


def static_check(path: Path) -> dict:
    """Which of the model's ops the Edge TPU's published list covers, in execution order."""
    from saunet.runtime.interpreter import find_backend

    _, backend = find_backend()
    interpreter = backend.Interpreter(
        model_path=str(path), experimental_op_resolver_type=backend.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    interpreter.allocate_tensors()
    ops, first_unsupported = [], None
    for op in interpreter._get_ops_details():
        name, reason = op["op_name"], None
        if name not in SUPPORTED:
            reason = "not in the Edge TPU's operation list"
        elif name in SPATIAL_REDUCTIONS:
            axes = {int(a) for a in interpreter.get_tensor(op["inputs"][1]).ravel()}
            rank = len(interpreter.get_tensor_details()[op["inputs"][0]]["shape"])
            axes = {a % rank for a in axes}
            if not axes <= {1, 2}:
                reason = f"reduces over axes {sorted(axes)}; the Edge TPU reduces over x and y only"
        if reason and first_unsupported is None:
            first_unsupported = len(ops)
        ops.append({"index": len(ops), "op": name, "supported": reason is None, "reason": reason})
    mapped = len(ops) if first_unsupported is None else first_unsupported
    return {"check": "static (published op list; not the compiler)", "ops": ops,
            "ops_before_first_unsupported": mapped, "ops_total": len(ops),
            "unsupported": sorted({(o["op"], o["reason"]) for o in ops if not o["supported"]})}


def compile_or_check(path: Path) -> dict:
    """Runs edgetpu_compiler if it is on PATH; otherwise says so and returns the static check."""
    compiler = shutil.which("edgetpu_compiler")
    if compiler is None:
        return {"compiler": None, "note": "edgetpu_compiler is not on PATH (x86-64 Linux only)",
                **static_check(path)}
    result = subprocess.run([compiler, "-s", "-o", str(path.parent), str(path)], capture_output=True, text=True)
    return {"compiler": compiler, "returncode": result.returncode, "log": result.stdout + result.stderr}


def summary(report: dict) -> str:
    """A few lines for the terminal."""
    if report.get("compiler"):
        return report["log"]
    lines = [f"Edge TPU: {report['note']}; {report['check']}:",
             f"  {report['ops_before_first_unsupported']} of {report['ops_total']} ops would map before the first "
             "unsupported one; the rest would run on the CPU."]
    lines += [f"  unsupported: {op} ({reason})" for op, reason in report["unsupported"]]
    return "\n".join(lines)
