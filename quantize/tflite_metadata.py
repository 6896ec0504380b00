"""Writes the saunet metadata into a .tflite file (saunet.runtime.metadata reads it)."""

from __future__ import annotations

import json

from tensorflow.lite.python import schema_py_generated as schema
from tensorflow.lite.tools import flatbuffer_utils

from saunet.runtime.metadata import METADATA_NAME


def embed(model: bytes, metadata: dict) -> bytes:
    """The model with `metadata` as JSON under the name "saunet" (replacing an older entry)."""
    tree = flatbuffer_utils.convert_bytearray_to_object(bytearray(model))
    buffer = schema.BufferT()
    buffer.data = list(json.dumps(metadata, sort_keys=True).encode())
    tree.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name = METADATA_NAME
    entry.buffer = len(tree.buffers) - 1
    tree.metadata = [m for m in (tree.metadata or []) if m.name not in (METADATA_NAME, METADATA_NAME.encode())]
    tree.metadata.append(entry)
    return bytes(flatbuffer_utils.convert_object_to_bytearray(tree))
