"""A loaded saunet model: scan in, tumour probability map out, at the scan's own size."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from saunet.runtime.interpreter import check_tensors, make_interpreter
from saunet.runtime.metadata import ModelError, check_preprocessing, read_metadata
from saunet.runtime.preprocess import Preprocessing, model_pixels, resize_probability, to_input


@dataclass
class Prediction:
    """One scan's result: probabilities at the scan's size, and where the time went (ms)."""

    probability: np.ndarray
    preprocess_ms: float
    invoke_ms: float
    postprocess_ms: float


class Segmenter:
    """Wraps one interpreter, built once and reused for every scan.

    Args:
        model_path: a .tflite file written by saunet-export (it carries its preprocessing).
        threads: CPU threads; all cores by default.
        delegate: "edgetpu", a path to an external delegate library, or None for the CPU.
        backend: require an interpreter package by name (default: the lightest installed).
    """

    def __init__(
        self,
        model_path: Path | str,
        threads: int | None = None,
        delegate: str | None = None,
        backend: str | None = None,
    ):
        self.path = Path(model_path)
        self.metadata = read_metadata(self.path)
        values = check_preprocessing(self.path, self.metadata)
        try:
            self.spec = Preprocessing.from_dict(values)
        except (TypeError, ValueError) as error:
            raise ModelError(
                self.path, f"its preprocessing metadata is not usable ({error}); a newer saunet may have made it"
            ) from None
        self.interpreter, self.backend = make_interpreter(self.path, threads, delegate, backend)
        self.delegate = delegate
        inputs, outputs = self.interpreter.get_input_details(), self.interpreter.get_output_details()
        check_tensors(self.path, inputs, outputs, self.spec.input_size)
        (self.input,), (self.output,) = inputs, outputs

    def model_input(self, pixels: np.ndarray) -> np.ndarray:
        """The input tensor for one HxWx3 uint8 scan (batch of 1), in the model's input type.

        saunet's int8 exports take pixel - 128 exactly (scale 1/255, zero point -128, see
        quantize/convert.py), which is computed directly; other models go through floats.
        """
        if (
            self.input["dtype"] == np.int8
            and self.input["quantization"] == (np.float32(self.spec.scale), -128)
            and np.float32(self.spec.scale) == np.float32(1 / 255)
        ):
            return (model_pixels(pixels, self.spec).astype(np.int16) - 128).astype(np.int8)[None]
        return self._quantize(to_input(pixels, self.spec)[None])

    def _quantize(self, x: np.ndarray) -> np.ndarray:
        scale, zero = self.input["quantization"]
        if self.input["dtype"] == np.float32 or not scale:
            return x.astype(self.input["dtype"])
        info = np.iinfo(self.input["dtype"])
        return np.clip(np.rint(x / np.float32(scale)) + zero, info.min, info.max).astype(self.input["dtype"])

    def _dequantize(self, y: np.ndarray) -> np.ndarray:
        scale, zero = self.output["quantization"]
        if self.output["dtype"] == np.float32 or not scale:
            return y.astype(np.float32)
        return (y.astype(np.float32) - zero) * np.float32(scale)

    def run(self, x: np.ndarray) -> np.ndarray:
        """The model alone: an input tensor from `model_input` in, its raw output tensor out.

        This is what `predict` times as invoke_ms and what saunet-bench's latency columns time.
        """
        self.interpreter.set_tensor(self.input["index"], x)
        self.interpreter.invoke()
        return self.interpreter.get_tensor(self.output["index"])

    def predict(self, pixels: np.ndarray) -> Prediction:
        """Probabilities for one HxWx3 uint8 scan, mapped back to HxW."""
        start = time.perf_counter()
        x = self.model_input(pixels)
        ready = time.perf_counter()
        raw = self.run(x)
        done = time.perf_counter()
        y = self._dequantize(raw[0, :, :, 0])
        probability = resize_probability(y, pixels.shape[0], pixels.shape[1])
        end = time.perf_counter()
        return Prediction(probability, 1e3 * (ready - start), 1e3 * (done - ready), 1e3 * (end - done))

    def predict_batch(self, images: np.ndarray) -> np.ndarray:
        """Probabilities for n x s x s x 3 uint8 scans (for evaluation); batch 1 underneath."""
        return np.stack([self.predict(image).probability for image in images])
