"""The saunet metadata inside a .tflite file: read here without TensorFlow or flatbuffers.

`saunet-export` stores a JSON document (preprocessing, threshold, provenance) as a named
entry of the model's `metadata` list, the place the TFLite schema reserves for it. A .tflite
file is a FlatBuffer; this reads just the few tables on the way to that entry:
Model.metadata[i] = {name, buffer} and Model.buffers[buffer].data.
"""
from __future__ import annotations

import json
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

    def tables(self, index: int) -> list["_Table"]:
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
                return json.loads(payload.decode())
    except (struct.error, IndexError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ModelError(path, f"corrupt or truncated TFLite model ({type(error).__name__})") from None
    raise ModelError(path, "a TFLite model without saunet metadata; export it with saunet-export")
