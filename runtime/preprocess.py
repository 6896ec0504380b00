"""Reading scans and masks and turning them into model input, in numpy and pillow only.

Defined once, here, and used by training as well as by the device runtime, so the model on
the Pi sees exactly the pixels it was trained on.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from saunet.runtime.intensity import non_finite, window

#: Larger images are refused as possible decompression bombs (a 256x256 slice is 65,536).
MAX_PIXELS = 50_000_000
IMAGE_SUFFIXES = (".tif", ".tiff", ".png", ".jpg", ".jpeg")

#: Intensity normalisations a model can be trained with (Preprocessing.normalise).
NORMALISATIONS = ("none", "channel-median")
#: A pixel brighter than this in any channel is inside the head (the data set's background is near 0).
HEAD_LEVEL = 10
#: channel-median maps each channel's median over the head to this: about the data set's
#: typical level (the median over the training and validation volumes' FLAIR channels is 49;
#: benchmarks/intensity_levels.py).
TARGET_MEDIAN = 50.0
#: channel-median brightens or darkens a channel by at most this factor, so an all but empty
#: channel is not blown up into noise.
MAX_GAIN = 4.0
#: Slices with fewer head pixels (the top of the skull) are left as they are.
MIN_HEAD_PIXELS = 64


def check_normalisation(method: str) -> None:
    """Refuses a normalisation this version does not know (say, in a newer saunet's model)."""
    if method not in NORMALISATIONS:
        raise ValueError(f"unknown intensity normalisation {method!r}; known: {', '.join(NORMALISATIONS)}")


class InputError(ValueError):
    """A file that cannot be used; the message is one line naming the file and the problem."""

    def __init__(self, path: Path | str, problem: str):
        super().__init__(f"{path}: {problem}")
        self.path = Path(path)
        self.problem = problem


@dataclass(frozen=True)
class Preprocessing:
    """How a scan becomes model input; stored in every exported model's metadata.

    Args:
        input_size: the model's square input side; scans are resized to it (bilinear).
        channels: what the three input channels hold, in order.
        scale: multiplier from 8-bit pixel values to model input (1/255: input in [0, 1]).
        threshold: probability above which a pixel counts as tumour.
        normalise: intensity normalisation after resizing, one of NORMALISATIONS: "none", or
            "channel-median" (see normalise_intensity).
    """

    input_size: int = 256
    channels: tuple[str, ...] = ("pre-contrast", "FLAIR", "post-contrast")
    scale: float = 1.0 / 255.0
    threshold: float = 0.5
    normalise: str = "none"

    def __post_init__(self) -> None:
        check_normalisation(self.normalise)

    def to_dict(self) -> dict:
        return {**asdict(self), "channels": list(self.channels)}

    @classmethod
    def from_dict(cls, values: dict) -> Preprocessing:
        known = {k: values[k] for k in cls.__dataclass_fields__ if k in values}
        if "channels" in known:
            known["channels"] = tuple(known["channels"])
        return cls(**known)


def _open(path: Path) -> Image.Image:
    """Opens an image, refusing missing, unreadable, corrupt and oversized files."""
    if not path.exists():
        raise InputError(path, "no such file")
    if not path.is_file():
        raise InputError(path, "not a file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(path)
            if image.width * image.height > MAX_PIXELS:
                image.close()
                raise InputError(path, f"{image.width}x{image.height} pixels is above the limit of {MAX_PIXELS:,}")
            image.load()
    except InputError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise InputError(path, f"image is larger than the limit of {MAX_PIXELS:,} pixels") from None
    except PermissionError:
        raise InputError(path, "permission denied") from None
    except (OSError, SyntaxError, ValueError) as error:
        raise InputError(path, f"not a readable image ({error})") from None
    return image


#: Pillow modes read as they are: 8-bit grey and colour, and the 16-bit, 32-bit and float grey ones.
DIRECT_MODES = ("L", "RGB", "I;16", "I;16B", "I;16L", "I;16N", "I", "F")
#: Pillow modes converted to 8-bit grey or RGB first (their values are 8-bit, or a palette of 8-bit colours).
CONVERTED_MODES = {
    "1": "L",
    "LA": "L",
    "La": "L",
    "P": "RGB",
    "PA": "RGB",
    "RGBA": "RGB",
    "RGBa": "RGB",
    "RGBX": "RGB",
    "CMYK": "RGB",
    "YCbCr": "RGB",
}
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _png_depth_and_colour(path: Path) -> tuple[int, int]:
    """A PNG's bit depth and colour type, from its IHDR chunk (bytes 24 and 25 of the file)."""
    with open(path, "rb") as handle:
        head = handle.read(26)
    return (head[24], head[25]) if len(head) == 26 and head.startswith(PNG_SIGNATURE) else (0, 0)


def _read_16_bit_colour_png(path: Path) -> np.ndarray:
    """All 16 bits of a colour (or grey + alpha) PNG, whose high byte is all Pillow keeps.

    pypng (pure Python, no compiled code, so as light as the device needs) decodes it; alpha is
    dropped, as for 8-bit images.
    """
    import png

    try:
        width, height, rows, info = png.Reader(filename=str(path)).asDirect()
        planes = info["planes"]
        pixels = np.vstack([np.asarray(row, dtype=np.uint16) for row in rows]).reshape(height, width, planes)
    except (png.Error, ValueError, OSError) as error:
        raise InputError(path, f"not a readable image ({error})") from None
    colour = planes - (1 if info["alpha"] else 0)
    return pixels[:, :, 0] if colour == 1 else pixels[:, :, :3]


def read_pixels(path: Path | str) -> np.ndarray:
    """A scan's values as stored, all bits kept: HxW for grey, HxWx3 for colour; alpha dropped.

    The dtype is what the file holds (uint8, uint16, int32 or float32): windowing to 8 bits is
    a per-volume decision (saunet.runtime.intensity), taken once the whole volume is read.
    """
    path = Path(path)
    image = _open(path)
    if image.format == "PNG" and _png_depth_and_colour(path) in ((16, 2), (16, 4), (16, 6)):
        return _read_16_bit_colour_png(path)
    if image.format == "TIFF" and image.mode[0] not in "IF" and max(_tiff_bits(image)) > 8:
        raise InputError(
            path,
            f"{max(_tiff_bits(image))}-bit colour TIFF is not supported (Pillow would keep its "
            "high byte only); save it as a 16-bit PNG or one grey TIFF per sequence",
        )
    if image.mode in CONVERTED_MODES:
        image = image.convert(CONVERTED_MODES[image.mode])
    elif image.mode not in DIRECT_MODES:
        raise InputError(path, f"unsupported image mode {image.mode}")
    pixels = np.asarray(image)
    if pixels.dtype.byteorder == ">":
        pixels = pixels.astype(pixels.dtype.newbyteorder("="))
    if pixels.ndim == 3 and pixels.shape[2] == 1:
        pixels = pixels[:, :, 0]
    if not (pixels.ndim == 2 or (pixels.ndim == 3 and pixels.shape[2] == 3)):
        raise InputError(path, f"unsupported image layout {pixels.shape} (mode {image.mode})")
    return pixels


def _tiff_bits(image: Image.Image) -> tuple[int, ...]:
    bits = image.tag_v2.get(258, (8,)) if hasattr(image, "tag_v2") else (8,)
    return tuple(bits) if isinstance(bits, tuple) else (int(bits),)


def to_8_bit(pixels: np.ndarray, path: Path | str, grey: bool) -> np.ndarray:
    """A whole volume or image as read -> uint8 ... x H x W x 3 by the windowing rule of runtime.intensity.

    `grey` says the array has no channel axis: the one sequence is then copied into all three
    channels, which is how the data set itself fills a missing sequence (with FLAIR), so a single
    FLAIR slice or volume is a valid input. NaN or infinite values are refused, naming the file.
    """
    bad = non_finite(pixels)
    if bad:
        raise InputError(path, f"{bad} NaN or infinite pixel value(s); no window can place them")
    eight = window(pixels, channels_last=not grey)
    return eight if not grey else np.ascontiguousarray(np.repeat(eight[..., None], 3, axis=-1))


def read_image(path: Path | str) -> np.ndarray:
    """Reads a scan as an HxWx3 uint8 array (the image is a volume of one slice for the windowing).

    Grayscale is copied into all three channels (to_8_bit); alpha is dropped; 16-bit, 32-bit
    and float scans are windowed to 8 bits by runtime.intensity's rule.
    """
    pixels = read_pixels(path)
    return to_8_bit(pixels, path, grey=pixels.ndim == 2)


def read_mask(path: Path | str) -> np.ndarray:
    """Reads a mask as an HxW uint8 array of 0 and 1.

    The data set stores 0 and 255; masks saved as 0 and 1, or as 16-bit, read the same way
    (a pixel is tumour above half the mask's maximum).
    """
    path = Path(path)
    pixels = np.asarray(_open(path))
    if pixels.ndim == 3:
        pixels = pixels[:, :, 0]
    if pixels.ndim != 2:
        raise InputError(path, f"a mask must be a 2D image, got shape {pixels.shape}")
    top = pixels.max()
    return (pixels > top / 2).astype(np.uint8) if top > 0 else np.zeros(pixels.shape, np.uint8)


def resize_image(pixels: np.ndarray, size: int) -> np.ndarray:
    """Resizes an HxWx3 uint8 scan to size x size (bilinear); a no-op at the right size."""
    if pixels.shape[:2] == (size, size):
        return pixels
    return np.asarray(Image.fromarray(pixels).resize((size, size), Image.BILINEAR))


def resize_mask(mask: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resizes a 0/1 mask to height x width (nearest neighbour keeps it binary)."""
    if mask.shape == (height, width):
        return mask
    return np.asarray(Image.fromarray(mask).resize((width, height), Image.NEAREST))


def resize_probability(prob: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resizes a float probability map to height x width (bilinear), to map masks back."""
    if prob.shape == (height, width):
        return prob
    return np.asarray(Image.fromarray(prob.astype(np.float32), mode="F").resize((width, height), Image.BILINEAR))


def head_mask(pixels: np.ndarray) -> np.ndarray:
    """The pixels inside the head: brighter than HEAD_LEVEL in any channel (... x H x W x 3 -> ... x H x W).

    Compared channel by channel: numpy's max over a last axis of 3 costs several times more,
    and this runs on every scan on the device.
    """
    head = pixels[..., 0] > HEAD_LEVEL
    for channel in range(1, pixels.shape[-1]):
        head |= pixels[..., channel] > HEAD_LEVEL
    return head


def uint8_median(values: np.ndarray) -> float:
    """np.median of a 1-D uint8 array, exactly, from its histogram (linear time, no float copy)."""
    cumulative = np.cumsum(np.bincount(values, minlength=256))
    middle = ((len(values) - 1) // 2, len(values) // 2)  # equal for an odd count
    return float(sum(np.searchsorted(cumulative, k, side="right") for k in middle)) / 2


def normalise_intensity(pixels: np.ndarray, method: str) -> np.ndarray:
    """Normalises one HxWx3 uint8 scan, or an NxHxWx3 batch slice by slice; uint8 in and out.

    "channel-median" scales each channel so that its median over the head is TARGET_MEDIAN.
    The data set's five institutions stored their sequences at different brightness (one
    channel can sit at a third of the others' level); the tumour's contrast within a channel
    is kept, its absolute level made comparable. Per slice, not per volume, because
    saunet-run is given single slices. The result stays 8-bit, so the int8 model's input
    remains exact.
    """
    check_normalisation(method)
    if method == "none":
        return pixels
    if pixels.ndim == 4:
        return np.stack([normalise_intensity(p, method) for p in pixels]) if len(pixels) else pixels
    head = head_mask(pixels)
    if head.sum() < MIN_HEAD_PIXELS:
        return pixels
    medians = np.array([uint8_median(pixels[..., c][head]) for c in range(pixels.shape[-1])], dtype=np.float32)
    gains = np.clip(np.float32(TARGET_MEDIAN) / np.maximum(medians, 1), 1 / MAX_GAIN, MAX_GAIN).astype(np.float32)
    # Each channel through a 256-entry table of rint(level * gain): the same float32 arithmetic
    # as scaling every pixel, done once per level instead of once per pixel.
    tables = np.clip(np.rint(np.arange(256, dtype=np.uint8)[:, None] * gains), 0, 255).astype(np.uint8)
    return np.stack([tables[pixels[..., c], c] for c in range(pixels.shape[-1])], axis=-1)


def model_pixels(pixels: np.ndarray, spec: Preprocessing) -> np.ndarray:
    """One scan (HxWx3 uint8, any size) -> the uint8 pixels the model sees: resized, then normalised."""
    return normalise_intensity(resize_image(pixels, spec.input_size), spec.normalise)


def to_input(pixels: np.ndarray, spec: Preprocessing) -> np.ndarray:
    """One scan (HxWx3 uint8, any size) -> the float32 model input (size x size x 3).

    Training applies the same arithmetic (model_pixels, then uint8 -> float32 times float32
    scale), so training and device inputs are equal to the bit.
    """
    return model_pixels(pixels, spec).astype(np.float32) * np.float32(spec.scale)
