"""Finding a LiteRT interpreter and loading delegates, lightest first.

ai-edge-litert is the maintained one (x86-64, aarch64, macOS); tflite-runtime is the one
that still ships for 32-bit Raspberry Pi OS (armv7l, Python up to 3.11, numpy<2). TensorFlow's
own interpreter is used only when neither is installed, so the device never needs it.
"""
from __future__ import annotations

import importlib
import os
from pathlib import Path

from saunet.runtime.metadata import ModelError

#: Module paths tried in order, with the name the runtime reports.
BACKENDS = (
    ("ai-edge-litert", "ai_edge_litert.interpreter"),
    ("tflite-runtime", "tflite_runtime.interpreter"),
    ("tensorflow", "tensorflow.lite"),
)
EDGETPU_LIBRARY = "libedgetpu.so.1"


class DelegateError(RuntimeError):
    """A delegate that could not be loaded (one line, naming the library)."""


def find_backend(prefer: str | None = None):
    """(name, module) of the first importable interpreter; `prefer` names one to require."""
    tried = []
    for name, module_path in BACKENDS:
        if prefer and name != prefer:
            continue
        try:
            return name, importlib.import_module(module_path)
        except ImportError:
            tried.append(name)
    raise RuntimeError(
        "no TFLite interpreter installed (tried " + ", ".join(tried) + "); "
        "install one: pip install 'saunet[pi]'"
    )


def load_delegate(backend, spec: str):
    """Loads `--delegate edgetpu` (libedgetpu.so.1) or an external delegate from a path."""
    library = EDGETPU_LIBRARY if spec == "edgetpu" else spec
    if spec != "edgetpu" and not Path(library).is_file():
        raise DelegateError(f"{library}: no such delegate library")
    try:
        return backend.load_delegate(library)
    except (ValueError, OSError, RuntimeError) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise DelegateError(f"{library}: delegate failed to load ({reason})") from None


def make_interpreter(model_path: Path, threads: int | None = None, delegate: str | None = None,
                     prefer: str | None = None):
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
    try:
        interpreter = backend.Interpreter(
            model_path=str(model_path), num_threads=threads or os.cpu_count() or 1,
            experimental_delegates=delegates,
        )
        interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ModelError(model_path, f"the interpreter cannot load it ({reason})") from None
    return interpreter, name
