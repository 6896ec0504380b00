"""Property: any image Pillow or numpy can make gives a mask of its size or a one-line refusal, never a crash.

And an accepted image's mask is the mask of the same pixels in plain 8-bit RGB form.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import png
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image

from saunet.runtime.cli import BUNDLED_MODEL, Options, segment_all
from saunet.runtime.inputs import collect
from saunet.runtime.preprocess import read_image
from saunet.runtime.segmenter import Segmenter

#: (Pillow mode or pypng layout, numpy dtype, channels, file formats Pillow writes it to)
KINDS = {
    "1": (np.bool_, 0, ("PNG", "TIFF")),
    "L": (np.uint8, 0, ("PNG", "TIFF", "JPEG")),
    "LA": (np.uint8, 2, ("PNG", "TIFF")),
    "P": (np.uint8, 0, ("PNG", "TIFF")),
    "RGB": (np.uint8, 3, ("PNG", "TIFF", "JPEG")),
    "RGBA": (np.uint8, 4, ("PNG", "TIFF")),
    "CMYK": (np.uint8, 4, ("TIFF", "JPEG")),
    "YCbCr": (np.uint8, 3, ("TIFF", "JPEG")),
    "I;16": (np.uint16, 0, ("PNG", "TIFF")),
    "I": (np.int32, 0, ("TIFF",)),
    "F": (np.float32, 0, ("TIFF",)),
    "png16": (np.uint16, 0, ("pypng",)),
    "png16-LA": (np.uint16, 2, ("pypng",)),
    "png16-RGB": (np.uint16, 3, ("pypng",)),
    "png16-RGBA": (np.uint16, 4, ("pypng",)),
}
SUFFIX = {"PNG": ".png", "TIFF": ".tif", "JPEG": ".jpg", "pypng": ".png"}


@pytest.fixture(scope="module")
def segmenter() -> Segmenter:
    return Segmenter(BUNDLED_MODEL, threads=1)


@st.composite
def images(draw) -> tuple[str, str, np.ndarray]:
    kind = draw(st.sampled_from(sorted(KINDS)))
    dtype, channels, formats = KINDS[kind]
    fmt = draw(st.sampled_from(formats))
    shape = (draw(st.integers(1, 40)), draw(st.integers(1, 40))) + ((channels,) if channels else ())
    if dtype == np.float32:
        elements = st.floats(width=32, allow_nan=True, allow_infinity=True)
    elif dtype == np.bool_:
        elements = st.booleans()
    else:
        info = np.iinfo(dtype)
        low = draw(st.integers(int(info.min), int(info.max)))
        elements = st.integers(low, draw(st.integers(low, int(info.max))))
    values = draw(arrays(dtype, shape, elements=elements))
    return kind, fmt, values


def save(kind: str, fmt: str, values: np.ndarray, path: Path) -> None:
    if fmt == "pypng":
        planes = 1 if values.ndim == 2 else values.shape[2]
        writer = png.Writer(
            values.shape[1], values.shape[0], greyscale=planes in (1, 2), alpha=planes in (2, 4), bitdepth=16
        )
        with open(path, "wb") as handle:
            writer.write(handle, values.reshape(values.shape[0], -1))
        return
    image = (
        Image.fromarray(values, mode=kind)
        if kind not in ("P", "I;16")
        else (Image.fromarray(values).convert("P") if kind == "P" else Image.fromarray(values))
    )
    image.save(path, format=fmt)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(image=images())
def test_any_image_gives_a_mask_of_its_size_or_one_line(segmenter: Segmenter, image) -> None:
    kind, fmt, values = image
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"scan{SUFFIX[fmt]}"
        try:
            save(kind, fmt, values, path)
        except (OSError, ValueError, TypeError):
            return  # Pillow cannot write this combination: nothing for saunet-run to read
        items, _ = collect((path,))
        (entry,) = segment_all(items, segmenter.predict, Options(threshold=0.5), Path(folder) / "out")
        json.dumps(entry, allow_nan=False)
        event("refused" if "error" in entry else "segmented")
        if "error" in entry:
            assert "\n" not in entry["error"] and entry["error"], entry
            return
        mask = np.asarray(Image.open(entry["mask"]))
        assert mask.shape == values.shape[:2] and set(np.unique(mask)) <= {0, 255}
        if values.dtype.kind == "f":
            assert np.isfinite(values).all(), "a scan with NaN or infinite values must be refused"
        # the same pixels in plain 8-bit RGB form give the same mask
        plain = Path(folder) / "plain.png"
        Image.fromarray(read_image(path)).save(plain)
        (again,) = segment_all(collect((plain,))[0], segmenter.predict, Options(threshold=0.5), Path(folder) / "out")
        np.testing.assert_array_equal(np.asarray(Image.open(again["mask"])), mask)
