"""Finding a LiteRT interpreter and loading delegates, lightest first.

ai-edge-litert is the maintained one (x86-64, aarch64, macOS); tflite-runtime is the one
that still ships for 32-bit Raspberry Pi OS (armv7l, Python up to 3.11, numpy<2). TensorFlow's
own `tf.lite.Interpreter` is not a fallback: TensorFlow 2.21 no longer has it, so the `train`
extra installs ai-edge-litert too, and a machine with neither gets one line saying what to install.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from saunet.runtime.metadata import ModelError
from saunet.runtime.quiet import stderr_silenced

#: Module paths tried in order, with the name the runtime reports.
BACKENDS = (
    ("ai-edge-litert", "ai_edge_litert.interpreter"),
    ("tflite-runtime", "tflite_runtime.interpreter"),
)
EDGETPU_LIBRARY = "libedgetpu.so.1"
#: The two C functions of TFLite's external delegate interface (external_delegate_interface.h).
DELEGATE_SYMBOLS = ("tflite_plugin_create_delegate", "tflite_plugin_destroy_delegate")


class DelegateError(RuntimeError):
    """A delegate that could not be loaded (one line, naming the library)."""


class NoInterpreterError(RuntimeError):
    """No LiteRT interpreter package can be imported (one line, saying what to install)."""


def find_backend(prefer: str | None = None):
    """(name, module) of the first importable interpreter; `prefer` names one to require."""
    tried = []
    for name, module_path in BACKENDS:
        if prefer and name != prefer:
            continue
        try:
            module = importlib.import_module(module_path)
        except ImportError:
            tried.append(name)
            continue
        if hasattr(module, "Interpreter") and hasattr(module, "load_delegate"):
            return name, module
        tried.append(f"{name} (no Interpreter)")
    raise NoInterpreterError(
        "no LiteRT interpreter can be loaded (tried " + (", ".join(tried) or repr(prefer)) + "); "
        "install one: pip install ai-edge-litert (tflite-runtime on 32-bit Raspberry Pi OS), "
        "or reinstall saunet with its 'pi' or 'train' extra"
    )


def _one_line(error: BaseException) -> str:
    """An exception's message on one line (LiteRT's span several)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return "; ".join(lines)[:300] if lines else type(error).__name__


@contextlib.contextmanager
def _quiet_delegate_finalizer() -> Iterator[None]:
    """Silences the `Exception ignored in Delegate.__del__` traceback of a half-built delegate.

    LiteRT's Delegate.__del__ assumes its __init__ succeeded; when loading fails, the half-built
    object's finalizer raises AttributeError while it is freed, which Python prints as a traceback.
    Other unraisable exceptions still reach the previous hook.
    """
    previous = sys.unraisablehook

    def hook(unraisable) -> None:
        if not getattr(unraisable.object, "__qualname__", "").endswith("Delegate.__del__"):
            previous(unraisable)

    sys.unraisablehook = hook
    try:
        yield
    finally:
        sys.unraisablehook = previous


def check_delegate_library(library: str) -> None:
    """Refuses a library that does not load or is not a TFLite external delegate, before LiteRT tries it."""
    try:
        handle = ctypes.CDLL(library)
    except OSError as error:
        why = _one_line(error).removeprefix(f"{library}: ")
        raise DelegateError(f"{library}: delegate library cannot be loaded ({why})") from None
    missing = [symbol for symbol in DELEGATE_SYMBOLS if not hasattr(handle, symbol)]
    if missing:
        raise DelegateError(f"{library}: not a TFLite delegate library (it lacks {missing[0]})")


def load_delegate(backend, spec: str):
    """Loads `--delegate edgetpu` (libedgetpu.so.1) or an external delegate from a path."""
    library = EDGETPU_LIBRARY if spec == "edgetpu" else spec
    if spec != "edgetpu" and not Path(library).is_file():
        raise DelegateError(f"{library}: no such delegate library")
    check_delegate_library(library)
    reason = None
    with _quiet_delegate_finalizer():
        try:
            return backend.load_delegate(library)
        except (ValueError, OSError, RuntimeError, AttributeError) as error:
            reason = _one_line(error)
    raise DelegateError(f"{library}: delegate failed to load ({reason})")


def make_interpreter(
    model_path: Path, threads: int | None = None, delegate: str | None = None, prefer: str | None = None
):
    """Builds and allocates an interpreter for `model_path`.

    Args:
        model_path: the .tflite file.
        threads: CPU threads (XNNPACK); all cores by default (LiteRT's own default is one).
        delegate: "edgetpu" or a path to an external delegate library; None for the CPU.
        prefer: require a given backend by name (see BACKENDS), for tests and benchmarks.
    Returns:
        (interpreter, backend name)
    """
    name, backend = find_backend(prefer)
    delegates = [load_delegate(backend, delegate)] if delegate else None
    reason = None
    with _quiet_delegate_finalizer():
        try:
            with stderr_silenced():
                interpreter = backend.Interpreter(
                    model_path=str(model_path),
                    num_threads=threads or os.cpu_count() or 1,
                    experimental_delegates=delegates,
                )
                interpreter.allocate_tensors()
            return interpreter, name
        except (ValueError, RuntimeError) as error:
            reason = _one_line(error)
    raise ModelError(model_path, f"the interpreter cannot load it ({reason})")


#: Tensor types a saunet model's input and output may have.
IO_DTYPES = ("int8", "uint8", "float32")


def _quantization_problem(tensor: dict) -> str | None:
    """Why a tensor's quantization cannot be used, or None: integer tensors need one finite
    positive scale and a zero point inside their type; float tensors need none."""
    dtype = np.dtype(tensor["dtype"])
    params = tensor.get("quantization_parameters") or {}
    scales = np.asarray(params.get("scales", []), np.float64)
    zeros = np.asarray(params.get("zero_points", []), np.int64)
    if dtype == np.float32:
        return None
    if scales.size != 1 or zeros.size != 1:
        return f"{dtype.name} with {scales.size} quantization scale(s) instead of one"
    info = np.iinfo(dtype)
    if not (np.isfinite(scales[0]) and scales[0] > 0):
        return f"{dtype.name} with quantization scale {scales[0]}"
    if not info.min <= zeros[0] <= info.max:
        return f"{dtype.name} with zero point {zeros[0]} outside its range"
    return None


def check_tensors(model_path: Path | str, inputs: list[dict], outputs: list[dict], size: int) -> None:
    """Refuses (ModelError) a model that is not one image in, one mask out, at `size` (its metadata's).

    saunet models take a 1 x size x size x 3 image and give a 1 x size x size x 1 probability
    map, as int8, uint8 or float32 with usable quantization. Anything else (a classifier, a
    two-headed model, crafted quantization) would be read as a mask of nonsense.
    """
    if len(inputs) != 1 or len(outputs) != 1:
        raise ModelError(
            model_path,
            f"{len(inputs)} input(s) and {len(outputs)} output(s); a saunet model has one image in and one mask out",
        )
    expected = {"input": (1, size, size, 3), "output": (1, size, size, 1)}
    for role, tensor in (("input", inputs[0]), ("output", outputs[0])):
        shape = tuple(int(d) for d in tensor["shape"])
        if shape != expected[role]:
            what = "image" if role == "input" else "mask"
            raise ModelError(
                model_path,
                f"{role} shape {'x'.join(map(str, shape)) or 'scalar'} is not the "
                f"{'x'.join(map(str, expected[role]))} {what} its metadata describes",
            )
        dtype = np.dtype(tensor["dtype"]).name
        if dtype not in IO_DTYPES:
            raise ModelError(model_path, f"{role} type {dtype} is not one of {', '.join(IO_DTYPES)}")
        problem = _quantization_problem(tensor)
        if problem:
            raise ModelError(model_path, f"{role} is {problem}")
