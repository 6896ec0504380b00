"""What saunet-run writes for a scan: the mask, an overlay, and its line in results.json."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from saunet.runtime.files import atomic_path
from saunet.runtime.preprocess import InputError

TINT = np.array([255, 40, 40], np.float32)
OUTLINE = np.array([255, 230, 0], np.uint8)


def outline(mask: np.ndarray) -> np.ndarray:
    """The mask's border pixels: in the mask, with a 4-neighbour outside it."""
    padded = np.pad(mask.astype(bool), 1)
    inner = padded[1:-1, 1:-1]
    eroded = inner & padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    return inner & ~eroded


def overlay(pixels: np.ndarray, mask: np.ndarray, alpha: float = 0.35) -> np.ndarray:
    """The scan (RGB as stored) with the tumour tinted red and outlined in yellow."""
    out = pixels.copy()
    inside = mask.astype(bool)
    out[inside] = ((1 - alpha) * out[inside] + alpha * TINT).round().astype(np.uint8)  # tumour pixels only
    out[outline(mask)] = OUTLINE
    return out


def summarize(probability: np.ndarray, mask: np.ndarray) -> dict:
    """Tumour pixels, their fraction of the slice, bounding box and mean probability inside."""
    pixels = int(mask.sum())
    rows, cols = np.nonzero(mask)
    return {
        "tumour_pixels": pixels,
        "tumour_fraction": pixels / mask.size,
        "bbox_xyxy": [int(cols.min()), int(rows.min()), int(cols.max()), int(rows.max())] if pixels else None,
        "mean_probability_inside": float(probability[mask.astype(bool)].mean()) if pixels else None,
    }


def save_png(path: Path, pixels: np.ndarray) -> None:
    """Writes a PNG atomically, with fast zlib level 1: level 6 (pillow's default) took 10 ms
    a 256x256 image here, a quarter of the int8 model's own time, for files ~20% smaller."""
    with atomic_path(path) as partial:
        Image.fromarray(pixels).save(partial, format="PNG", compress_level=1)


def write_outputs(pixels: np.ndarray, mask: np.ndarray, mask_file: Path, overlay_file: Path) -> None:
    """Writes a scan's mask (0/255) and overlay PNGs; InputError names a file that cannot be written."""
    for path, make in ((mask_file, lambda: mask * 255), (overlay_file, lambda: overlay(pixels, mask))):
        try:
            save_png(path, make())
        except OSError as error:
            raise InputError(path, f"cannot be written ({error.strerror or error})") from None

