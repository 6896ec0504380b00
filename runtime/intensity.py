"""The one rule that turns 16-bit, 32-bit and float scans into the 8-bit pixels the model was trained on.

The rule, the same for PNG, TIFF, NIfTI and DICOM:

1. 8-bit data (stored as uint8) are used as they are: that is the form of the training data.
2. Any other data is windowed per volume (a loose image is a volume of one slice) and per
   channel (sequence): its minimum maps to 0 and its 99.99th percentile of the voxels above
   the minimum maps to 255, linearly, rounded, clipped to 0..255.
3. NaN or infinite voxels are refused: no window can place them, and zeroing them would hide
   a broken export.

Why so: the data set's slices store each patient's sequences with the background at 0 and the
brightest voxels near, and almost never at, 255 (per volume and channel), which is what a
minimum-to-maximum scaling of the scanner's values gives (benchmarks/window_rule.py measures it,
and what the window costs the model). The 99.99th percentile instead of the maximum keeps a few
hot voxels from darkening the whole volume; the minimum is the background of an MR magnitude
image (and of a scan z-scored over the whole image). The rule is unchanged by any a * x + b
with a > 0, so a 12-bit export, its 16-bit rescale and its z-scored float copy all give the
same 8-bit pixels. What is left of a brightness difference is the model's own per-slice
normalisation's to even out (the bundled model's channel-median, runtime.preprocess). A scan
whose background is not its darkest value (z-scored inside a brain mask, background set to 0)
breaks the rule's premise; such a scan should be exported without that step.
"""

from __future__ import annotations

import numpy as np

#: The upper end of the window, as a percentile of the voxels above the volume's minimum.
TOP_PERCENTILE = 99.99


def non_finite(values: np.ndarray) -> int:
    """How many NaN or infinite values a scan holds (readers refuse the scan if any)."""
    return int(np.count_nonzero(~np.isfinite(values))) if values.dtype.kind in "fc" else 0


#: Integer data spanning at most this many levels are windowed through a histogram and a lookup
#: table (the same rule, without sorting or a float copy of the volume).
TABLE_LEVELS = 1 << 20


def window_channel(values: np.ndarray) -> np.ndarray:
    """One channel (any shape, finite, not uint8) -> uint8 by the rule above; a flat channel gives 0."""
    low, top = values.min(), values.max()
    if top <= low:
        return np.zeros(values.shape, np.uint8)
    if values.dtype.kind in "ui" and int(top) - int(low) < TABLE_LEVELS:
        return _window_integers(values, int(low), int(top))
    values = np.asarray(values, dtype=np.float64)
    high = float(np.percentile(values[values > low], TOP_PERCENTILE))
    return _scale(values, float(low), high)


def _scale(values: np.ndarray, low: float, high: float) -> np.ndarray:
    if high <= low:
        high = float(values.max())
    return np.clip(np.rint((values - low) / (high - low) * 255.0), 0, 255).astype(np.uint8)


def _window_integers(values: np.ndarray, low: int, top: int) -> np.ndarray:
    """The rule for integer data: the percentile from a histogram, each level mapped once, then looked up."""
    base = min(low, 0)
    index = values if base == 0 else values.astype(np.int64) - base
    counts = np.bincount(index.ravel(), minlength=top - base + 1)[low - base :]  # levels low..top
    above = np.cumsum(counts[1:])  # voxels above the minimum, up to each level from low + 1
    rank = TOP_PERCENTILE / 100.0 * (int(above[-1]) - 1)  # numpy's "linear" percentile of the sorted values
    below, fraction = int(np.floor(rank)), rank - np.floor(rank)
    first = int(np.searchsorted(above, below, side="right")) + low + 1
    second = int(np.searchsorted(above, min(below + 1, int(above[-1]) - 1), side="right")) + low + 1
    table = _scale(np.arange(base, top + 1, dtype=np.float64), float(low), first + (second - first) * fraction)
    return np.take(table, index)


def window(values: np.ndarray, channels_last: bool) -> np.ndarray:
    """A whole volume (or one image) in the stored type -> uint8 of the same shape, by the rule above.

    With `channels_last`, each channel of the last axis is windowed on its own (sequences are
    stored at unrelated levels); otherwise the array is one channel. uint8 passes untouched and
    bool becomes 0/255. The caller has refused non-finite values (non_finite).
    """
    if values.dtype == np.uint8:
        return values
    if values.dtype == np.bool_:
        return values.astype(np.uint8) * np.uint8(255)
    if not channels_last:
        return window_channel(values)
    return np.stack([window_channel(values[..., c]) for c in range(values.shape[-1])], axis=-1)
