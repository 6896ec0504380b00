"""One picture per volume: its slices that hold tumour, outlined and labelled, what a person looks at first."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from saunet.runtime.files import atomic_path
from saunet.runtime.outputs import overlay

LABEL_COLOUR = (255, 255, 255)
LABEL_SHADOW = (0, 0, 0)
GAP = 2


def montage(pixels: np.ndarray, mask: np.ndarray, labels: list[int]) -> np.ndarray:
    """slices x H x W x 3 scans and their 0/1 mask -> one RGB image of the tumour slices in a grid.

    Each tile is the slice with the tumour tinted and outlined (runtime.outputs.overlay),
    labelled "slice N" with the slice's number as the input names it. Without any tumour the
    middle slice is shown, labelled so.
    """
    chosen = [z for z in range(len(pixels)) if mask[z].any()]
    captions = [f"slice {labels[z]}" for z in chosen]
    if not chosen:
        chosen, captions = [len(pixels) // 2], [f"slice {labels[len(pixels) // 2]}: no tumour found"]
    height, width = pixels.shape[1:3]
    columns = math.ceil(math.sqrt(len(chosen)))
    rows = math.ceil(len(chosen) / columns)
    sheet = Image.new("RGB", (columns * (width + GAP) - GAP, rows * (height + GAP) - GAP))
    draw = ImageDraw.Draw(sheet)
    font = _font(max(10, height // 18))
    for n, (z, caption) in enumerate(zip(chosen, captions)):
        left, top = (n % columns) * (width + GAP), (n // columns) * (height + GAP)
        sheet.paste(Image.fromarray(overlay(pixels[z], mask[z])), (left, top))
        draw.text((left + 4, top + 3), caption, fill=LABEL_COLOUR, font=font, stroke_width=1, stroke_fill=LABEL_SHADOW)
    return np.asarray(sheet)


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    """Pillow's own font at `size` (its bitmap font where Pillow was built without FreeType)."""
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, ImportError, OSError):
        return ImageFont.load_default()


def save_montage(path: Path, picture: np.ndarray) -> None:
    """Writes the montage as PNG atomically, with pypng: unfiltered rows and zlib level 1 encode a
    large RGB picture several times faster than Pillow, which tries every row filter on each row;
    the file is somewhat larger, and it is written once per volume."""
    import png

    height, width = picture.shape[:2]
    with atomic_path(path) as partial, open(partial, "wb") as handle:
        png.Writer(width, height, greyscale=False, bitdepth=8, compression=1).write(
            handle, (row.tobytes() for row in np.ascontiguousarray(picture))
        )
