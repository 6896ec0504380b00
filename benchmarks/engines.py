"""The inference engines saunet-bench compares, behind one small interface.

Each engine takes a uint8 scan of any size and returns tumour probabilities at that size,
with the runtime's own preprocessing (saunet.runtime.preprocess), so that every row of the
benchmark sees exactly what the device sees. `call()` is the model alone, on an input
prepared beforehand: that is what the latency columns time.

Only the engine a row needs is imported: a TFLite row never loads TensorFlow, so its memory
figure is what the device runtime costs.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from saunet.runtime.preprocess import Preprocessing, resize_probability, to_input


class TFLiteEngine:
    """.tflite models through the device runtime's Segmenter (XNNPACK, or a delegate).

    One model, or several (an ensemble, probabilities averaged as saunet-run averages them); the
    latency columns time every model call a slice costs, as the device makes them one after another.
    """

    #: Also show each model the left-right mirrored scan (saunet-run --tta).
    tta = False

    def __init__(self, path: Path | Sequence[Path], threads: int, delegate: str | None, spec: Preprocessing):
        from saunet.runtime.segmenter import Segmenter

        paths = [path] if isinstance(path, Path) else list(path)
        self.segmenters = [Segmenter(p, threads=threads, delegate=delegate) for p in paths]
        self.backend = self.segmenters[0].backend + (f" + {delegate}" if delegate else "")

    def prepare(self, pixels: np.ndarray) -> list[tuple]:
        views = [pixels, np.ascontiguousarray(pixels[:, ::-1])] if self.tta else [pixels]
        return [(s, s.model_input(v)) for v in views for s in self.segmenters]

    def call(self, x: list[tuple]) -> list[np.ndarray]:
        return [segmenter.run(model_input) for segmenter, model_input in x]

    def probabilities(self, pixels: np.ndarray) -> np.ndarray:
        from saunet.runtime.ensemble import combined

        return combined(self.segmenters, tta=self.tta)(pixels).probability


class MirroredTFLiteEngine(TFLiteEngine):
    """saunet-run --tta: the scan and its left-right mirror through the model(s), probabilities averaged."""

    tta = True


class RawTFLiteEngine:
    """A .tflite model with no saunet metadata (a layer of the floor): latency only, random input.

    `prime` then `invoke` time the interpreter's work alone, without copying the input in or out.
    """

    def __init__(self, path: Path, threads: int, delegate: str | None, spec: Preprocessing):
        from saunet.runtime.interpreter import make_interpreter

        self.interpreter, self.backend = make_interpreter(path, threads, delegate)
        (self.input,) = self.interpreter.get_input_details()
        (self.output,) = self.interpreter.get_output_details()

    def prepare(self, pixels: np.ndarray) -> np.ndarray:
        info = np.iinfo(self.input["dtype"]) if np.issubdtype(self.input["dtype"], np.integer) else None
        rng = np.random.default_rng(0)
        if info:
            return rng.integers(info.min, info.max, self.input["shape"], dtype=self.input["dtype"])
        return rng.uniform(0, 1, self.input["shape"]).astype(self.input["dtype"])

    def call(self, x: np.ndarray) -> None:
        self.interpreter.set_tensor(self.input["index"], x)
        self.interpreter.invoke()
        self.interpreter.get_tensor(self.output["index"])

    def prime(self, x: np.ndarray) -> None:
        self.interpreter.set_tensor(self.input["index"], x)

    def invoke(self) -> None:
        self.interpreter.invoke()

    def probabilities(self, pixels: np.ndarray) -> np.ndarray:
        raise ValueError("a floor layer makes no masks")


class RawOnnxEngine:
    """An .onnx model with no saunet preprocessing (a layer of the floor): latency only, random input."""

    def __init__(self, path: Path, threads: int, delegate: str | None, spec: Preprocessing | None):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        (self.input,) = self.session.get_inputs()
        self.backend = f"onnxruntime {ort.__version__}"
        self.feed: dict = {}

    def prepare(self, pixels: np.ndarray) -> np.ndarray:
        return np.random.default_rng(0).uniform(0, 1, self.input.shape).astype(np.float32)

    def call(self, x: np.ndarray) -> None:
        self.session.run(None, {self.input.name: x})

    def prime(self, x: np.ndarray) -> None:
        self.feed = {self.input.name: x}

    def invoke(self) -> None:
        self.session.run(None, self.feed)

    def probabilities(self, pixels: np.ndarray) -> np.ndarray:
        raise ValueError("a floor layer makes no masks")


class OnnxEngine:
    """An ONNX model with float32 input and output (float, or int8 QDQ inside) through ONNX Runtime's CPU provider."""

    def __init__(self, path: Path, threads: int, delegate: str | None, spec: Preprocessing):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        self.spec = spec
        self.backend = f"onnxruntime {ort.__version__}"

    def prepare(self, pixels: np.ndarray) -> np.ndarray:
        return to_input(pixels, self.spec)[None]

    def call(self, x: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: x})[0]

    def probabilities(self, pixels: np.ndarray) -> np.ndarray:
        y = self.call(self.prepare(pixels))[0, :, :, 0]
        return resize_probability(y, pixels.shape[0], pixels.shape[1])


class KerasEngine:
    """The trained float model through TensorFlow, one scan per `predict_on_batch`.

    TensorFlow's thread pools are fixed when it starts, so each thread count is its own process.
    """

    def __init__(self, path: Path, threads: int, delegate: str | None, spec: Preprocessing):
        import tensorflow as tf

        import saunet.training  # noqa: F401  (Keras 2 before TensorFlow)

        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
        from saunet.training.evaluate import load_keras_model

        self.device = "/GPU:0" if delegate == "gpu" else "/CPU:0"
        with tf.device(self.device):
            self.model, _, _ = load_keras_model(path)
        self.tf = tf
        self.spec = spec
        self.backend = f"tensorflow {tf.__version__} ({'GPU' if delegate == 'gpu' else 'CPU'})"

    def prepare(self, pixels: np.ndarray) -> np.ndarray:
        return to_input(pixels, self.spec)[None]

    def call(self, x: np.ndarray) -> np.ndarray:
        with self.tf.device(self.device):
            return self.model.predict_on_batch(x)

    def probabilities(self, pixels: np.ndarray) -> np.ndarray:
        y = np.asarray(self.call(self.prepare(pixels)))[0, :, :, 0]
        return resize_probability(y, pixels.shape[0], pixels.shape[1])


ENGINES = {
    "tflite": TFLiteEngine,
    "tflite-tta": MirroredTFLiteEngine,
    "raw-tflite": RawTFLiteEngine,
    "onnx": OnnxEngine,
    "raw-onnx": RawOnnxEngine,
    "keras": KerasEngine,
}
#: The engine that times a floor's layers, by the floor's engine name (saunet.benchmarks.floor).
FLOOR_ENGINES = {"litert": "raw-tflite", "onnxruntime": "raw-onnx"}
