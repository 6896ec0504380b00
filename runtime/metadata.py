"""The saunet metadata inside a .tflite file: read here without TensorFlow or flatbuffers.

`saunet-export` stores a JSON document (preprocessing, threshold, provenance) as a named
entry of the model's `metadata` list, the place the TFLite schema reserves for it. A .tflite
file is a FlatBuffer; this reads just the few tables on the way to that entry:
Model.metadata[i] = {name, buffer} and Model.buffers[buffer].data.
"""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path

METADATA_NAME = "saunet"
TFLITE_IDENTIFIER = b"TFL3"

# Field numbers in the TFLite schema (tensorflow/compiler/mlir/lite/schema/schema.fbs).
MODEL_BUFFERS, MODEL_METADATA = 4, 6
METADATA_NAME_FIELD, METADATA_BUFFER_FIELD = 0, 1
BUFFER_DATA, BUFFER_OFFSET, BUFFER_SIZE = 0, 1, 2


class ModelError(ValueError):
    """A model file that is not a usable saunet model (one line, naming the file)."""

    def __init__(self, path: Path | str, problem: str):
        super().__init__(f"{path}: {problem}")


class _Table:
    """A FlatBuffer table at `pos` in `data`: just enough to follow offsets."""

    def __init__(self, data: bytes, pos: int):
        self.data, self.pos = data, pos
        vtable = pos - struct.unpack_from("<i", data, pos)[0]
        self.vtable_size = struct.unpack_from("<H", data, vtable)[0]
        self.vtable = vtable

    def _field(self, index: int) -> int | None:
        entry = 4 + 2 * index
        if entry >= self.vtable_size:
            return None
        offset = struct.unpack_from("<H", self.data, self.vtable + entry)[0]
        return self.pos + offset if offset else None

    def scalar(self, index: int, fmt: str, default=0):
        at = self._field(index)
        return default if at is None else struct.unpack_from("<" + fmt, self.data, at)[0]

    def _target(self, index: int) -> int | None:
        at = self._field(index)
        return None if at is None else at + struct.unpack_from("<I", self.data, at)[0]

    def bytes(self, index: int) -> bytes | None:
        target = self._target(index)
        if target is None:
            return None
        length = struct.unpack_from("<I", self.data, target)[0]
        return self.data[target + 4 : target + 4 + length]

    def tables(self, index: int) -> list[_Table]:
        target = self._target(index)
        if target is None:
            return []
        count = struct.unpack_from("<I", self.data, target)[0]
        items = []
        for i in range(count):
            at = target + 4 + 4 * i
            items.append(_Table(self.data, at + struct.unpack_from("<I", self.data, at)[0]))
        return items


def read_metadata(path: Path | str, data: bytes | None = None) -> dict:
    """The saunet metadata of a .tflite model; ModelError if the file is not a saunet model."""
    path = Path(path)
    if data is None:
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise ModelError(path, "no such model file") from None
        except OSError as error:
            raise ModelError(path, f"cannot read model ({error.strerror})") from None
    if len(data) < 8 or data[4:8] != TFLITE_IDENTIFIER:
        raise ModelError(path, "not a TFLite model (no TFL3 identifier)")
    try:
        model = _Table(data, struct.unpack_from("<I", data, 0)[0])
        buffers = model.tables(MODEL_BUFFERS)
        for entry in model.tables(MODEL_METADATA):
            if entry.bytes(METADATA_NAME_FIELD) == METADATA_NAME.encode():
                buffer = buffers[entry.scalar(METADATA_BUFFER_FIELD, "I")]
                payload = buffer.bytes(BUFFER_DATA)
                if payload is None:  # stored after the FlatBuffer (models over 2 GB)
                    offset, size = buffer.scalar(BUFFER_OFFSET, "Q"), buffer.scalar(BUFFER_SIZE, "Q")
                    payload = data[offset : offset + size]
                metadata = json.loads(payload.decode())
                break
        else:
            raise ModelError(path, "a TFLite model without saunet metadata; export it with saunet-export")
    except (struct.error, IndexError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ModelError(path, f"corrupt or truncated TFLite model ({type(error).__name__})") from None
    if not isinstance(metadata, dict):
        raise ModelError(path, f"its saunet metadata is a JSON {type(metadata).__name__}, not an object")
    return metadata


#: The largest input side a saunet model may declare (the data set's slices are 256).
MAX_INPUT_SIZE = 4096


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def check_preprocessing(path: Path | str, metadata: dict) -> dict:
    """The metadata's `preprocessing` section, refused (ModelError) unless every value is usable.

    A crafted or foreign model must not reach the pixels with a threshold of NaN or 2, a
    negative size or an unknown normalisation: each would give masks that look like answers.
    Keys this version does not know are refused too, since a newer saunet may have added a
    step this one would silently skip.
    """
    from saunet.runtime.preprocess import NORMALISATIONS, Preprocessing

    values = metadata.get("preprocessing")
    if not isinstance(values, dict):
        raise ModelError(path, "its saunet metadata has no preprocessing section")
    unknown = sorted(set(values) - set(Preprocessing.__dataclass_fields__))
    if unknown:
        raise ModelError(
            path, f"its preprocessing metadata has unknown key {unknown[0]!r}; a newer saunet may have made it"
        )
    problems = []
    size = values.get("input_size", Preprocessing.input_size)
    if not (isinstance(size, int) and not isinstance(size, bool) and 1 <= size <= MAX_INPUT_SIZE):
        problems.append(f"input_size {size!r} is not a whole number from 1 to {MAX_INPUT_SIZE}")
    channels = values.get("channels", list(Preprocessing.channels))
    if not (isinstance(channels, list) and len(channels) == 3 and all(isinstance(c, str) for c in channels)):
        problems.append(f"channels {channels!r} is not a list of three names")
    scale = values.get("scale", Preprocessing.scale)
    if not (_number(scale) and scale > 0):
        problems.append(f"scale {scale!r} is not a positive finite number")
    threshold = values.get("threshold", Preprocessing.threshold)
    if not (_number(threshold) and 0 <= threshold <= 1):
        problems.append(f"threshold {threshold!r} is not a number from 0 to 1")
    normalise = values.get("normalise", Preprocessing.normalise)
    if normalise not in NORMALISATIONS:
        problems.append(
            f"normalisation {normalise!r} is unknown (known: {', '.join(NORMALISATIONS)}); a newer "
            "saunet may have made it"
        )
    if problems:
        raise ModelError(path, "its preprocessing metadata is not usable: " + problems[0])
    return values
