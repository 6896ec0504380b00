"""What is inside a .tflite model: its ops and tensor types (for checks, reports, Edge TPU)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from saunet.runtime.interpreter import find_backend


def describe_model(path: Path) -> dict:
    """Op counts, tensor dtypes, input/output dtypes and shapes of a .tflite file."""
    _, backend = find_backend()
    # Without XNNPACK, which would otherwise replace the ops with one DELEGATE node.
    interpreter = backend.Interpreter(
        model_path=str(path), experimental_op_resolver_type=backend.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    )
    interpreter.allocate_tensors()
    ops = Counter(op["op_name"] for op in interpreter._get_ops_details())
    tensors = interpreter.get_tensor_details()
    (inp,), (out,) = interpreter.get_input_details(), interpreter.get_output_details()
    return {
        "ops": dict(sorted(ops.items())),
        "tensor_dtypes": dict(sorted(Counter(t["dtype"].__name__ for t in tensors).items())),
        "float_tensors": sorted(t["name"] for t in tensors if t["dtype"].__name__.startswith("float")),
        "input": {"dtype": inp["dtype"].__name__, "shape": [int(d) for d in inp["shape"]]},
        "output": {"dtype": out["dtype"].__name__, "shape": [int(d) for d in out["shape"]]},
    }
