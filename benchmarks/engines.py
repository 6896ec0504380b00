"""The inference engines saunet-bench compares, behind one small interface.

Each engine takes a uint8 scan of any size and returns tumour probabilities at that size,
with the runtime's own preprocessing (saunet.runtime.preprocess), so that every row of the
benchmark sees exactly what the device sees. `call()` is the model alone, on an input
prepared beforehand: that is what the latency columns time.

Only the engine a row needs is imported: a TFLite row never loads TensorFlow, so its memory
figure is what the device runtime costs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from saunet.runtime.preprocess import Preprocessing, resize_probability, to_input


class TFLiteEngine:
    """A .tflite model through the device runtime's Segmenter (XNNPACK, or a delegate)."""

    def __init__(self, path: Path, threads: int, delegate: str | None, spec: Preprocessing):
        from saunet.runtime.segmenter import Segmenter

        self.segmenter = Segmenter(path, threads=threads, delegate=delegate)
        self.backend = self.segmenter.backend + (f" + {delegate}" if delegate else "")

    def prepare(self, pixels: np.ndarray) -> np.ndarray:
        return self.segmenter.model_input(pixels)

    def call(self, x: np.ndarray) -> np.ndarray:
        return self.segmenter.run(x)

    def probabilities(self, pixels: np.ndarray) -> np.ndarray:
        return self.segmenter.predict(pixels).probability


class MirroredTFLiteEngine(TFLiteEngine):
    """saunet-run --tta: the scan and its left-right mirror through the model, probabilities averaged.

    The latency columns time both model calls, as the device runs them.
    """

    def prepare(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.segmenter.model_input(pixels), self.segmenter.model_input(np.ascontiguousarray(pixels[:, ::-1]))

    def call(self, x: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
        return self.segmenter.run(x[0]), self.segmenter.run(x[1])

    def probabilities(self, pixels: np.ndarray) -> np.ndarray:
        from saunet.runtime.ensemble import combined

        return combined([self.segmenter], tta=True)(pixels).probability


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
