"""Every pixel format saunet-run accepts gives the mask of the same pixels in plain 8-bit form, or one line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import png
import pytest
from PIL import Image

from saunet.runtime.intensity import TOP_PERCENTILE, window
from saunet.runtime.preprocess import InputError, read_image, read_pixels

from conftest import run_device as run

SCAN = "TCGA_CS_6186_20000601_16.png"


@pytest.fixture(scope="module")
def scan(real_slices: Path) -> np.ndarray:
    return read_image(real_slices / SCAN)


def write_png16(path: Path, pixels: np.ndarray) -> None:
    """A 16-bit PNG (grey, RGB or RGBA) written with pypng, as other tools write them."""
    height, width = pixels.shape[:2]
    planes = 1 if pixels.ndim == 2 else pixels.shape[2]
    writer = png.Writer(width, height, greyscale=planes in (1, 2), alpha=planes in (2, 4), bitdepth=16)
    with open(path, "wb") as handle:
        writer.write(handle, pixels.reshape(height, width * planes).astype(np.uint16))


def test_window_rule() -> None:
    values = np.arange(100_000, dtype=np.float64).reshape(100, 1000)
    got = window(values, channels_last=False)
    top = np.percentile(values[values > 0], TOP_PERCENTILE)
    assert got.dtype == np.uint8 and got.min() == 0 and got.max() == 255
    assert (got == 255).sum() == np.count_nonzero(values >= top - top / 510)  # the top 0.01% saturate, no more
    np.testing.assert_array_equal(got, np.clip(np.rint(values * 255 / top), 0, 255))
    # unchanged by a * x + b (a > 0): a 12-bit export, its rescale and a z-scored copy window alike
    z = (values - values.mean()) / values.std()
    assert np.abs(window(z.astype(np.float32), channels_last=False).astype(int) - got).max() <= 1
    np.testing.assert_array_equal(window(values * 16 + 7, channels_last=False), got)
    flat = np.full((4, 4), 1234.0)
    np.testing.assert_array_equal(window(flat, channels_last=False), np.zeros((4, 4), np.uint8))
    rgb = np.stack([values, values * 3], axis=-1)
    np.testing.assert_array_equal(window(rgb, channels_last=True), np.stack([got, got], axis=-1))
    eight = np.arange(256, dtype=np.uint8).reshape(16, 16)
    assert window(eight, channels_last=False) is eight  # 8-bit data are the training data's form


def test_16_bit_rgb_png_keeps_all_its_bits(scan: np.ndarray, tmp_path: Path) -> None:
    """Pillow reads a 16-bit RGB PNG as its high byte: 12-bit data would read nearly black."""
    twelve = scan.astype(np.uint16) * 16 + 3
    write_png16(tmp_path / "rgb16.png", twelve)
    assert np.asarray(Image.open(tmp_path / "rgb16.png")).max() < 16  # what Pillow alone gives
    np.testing.assert_array_equal(read_pixels(tmp_path / "rgb16.png"), twelve)
    write_png16(tmp_path / "rgba16.png", np.concatenate([twelve, np.full(twelve.shape[:2] + (1,), 65535)], axis=2))
    np.testing.assert_array_equal(read_pixels(tmp_path / "rgba16.png"), twelve)
    np.testing.assert_array_equal(read_image(tmp_path / "rgb16.png"), window(twelve, channels_last=True))
    write_png16(tmp_path / "la16.png", np.stack([twelve[..., 1], np.full(twelve.shape[:2], 65535)], axis=-1))
    np.testing.assert_array_equal(read_pixels(tmp_path / "la16.png"), twelve[..., 1])


def formats(scan: np.ndarray, folder: Path) -> dict[str, Path]:
    """The same scan stored in every deep format saunet-run takes (names say which)."""
    folder.mkdir()
    twelve = scan.astype(np.uint16) * 16 + 3
    paths = {
        name: folder / name
        for name in ("grey16.png", "rgb16.png", "float.tif", "zscored.tif", "int32.tif", "grey16.tif")
    }
    Image.fromarray(twelve[..., 1]).save(paths["grey16.png"])
    Image.fromarray(twelve[..., 1]).save(paths["grey16.tif"])
    write_png16(paths["rgb16.png"], twelve)
    Image.fromarray(twelve[..., 1].astype(np.float32) / 4095).save(paths["float.tif"])
    flair = scan[..., 1].astype(np.float32)
    Image.fromarray((flair - flair.mean()) / flair.std()).save(paths["zscored.tif"])
    Image.fromarray(twelve[..., 1].astype(np.int32) - 2000).save(paths["int32.tif"])
    return paths


def test_every_format_gives_the_mask_of_its_plain_8_bit_form(scan: np.ndarray, tmp_path: Path) -> None:
    paths = formats(scan, tmp_path / "deep")
    plain = tmp_path / "plain"
    plain.mkdir()
    for name, path in paths.items():
        Image.fromarray(read_image(path)).save(plain / f"{Path(name).stem}_{Path(name).suffix[1:]}_8bit.png")
    code, err = run(*map(str, paths.values()), *map(str, sorted(plain.iterdir())), "--out", str(tmp_path / "out"))
    assert code == 0, err
    entries = {Path(e["input"]).name: e for e in json.loads((tmp_path / "out" / "results.json").read_text())["results"]}
    for name in paths:
        deep = np.asarray(Image.open(entries[name]["mask"]))
        flat = np.asarray(Image.open(entries[f"{Path(name).stem}_{Path(name).suffix[1:]}_8bit.png"]["mask"]))
        assert deep.any(), f"{name}: the scan holds tumour; an empty mask would prove nothing"
        np.testing.assert_array_equal(deep, flat, err_msg=name)
    # the z-scored scan is the raw FLAIR, linearly: it gets the raw FLAIR's window (to a rounding step)
    raw = window(scan[..., 1].astype(np.float64), channels_last=False).astype(int)
    assert np.abs(read_image(paths["zscored.tif"])[..., 1].astype(int) - raw).max() <= 1


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_float_tiff_is_a_one_line_error(
    scan: np.ndarray, tmp_path: Path, real_slices: Path, bad: float
) -> None:
    values = scan[..., 1].astype(np.float32)
    values[100, 100] = bad
    path = tmp_path / "bad.tif"
    Image.fromarray(values).save(path)
    with pytest.raises(InputError):
        read_image(path)
    code, err = run(str(path), str(real_slices / SCAN), "--out", str(tmp_path / "out"))
    assert code == 1
    assert err.splitlines()[0] == f"error: {path}: 1 NaN or infinite pixel value(s); no window can place them"
    report = json.loads((tmp_path / "out" / "results.json").read_text())
    assert "error" in report["results"][0] and "mask" in report["results"][1]  # the batch went on


@pytest.mark.parametrize("value", ["nan", "inf", "-0.1", "1.5"])
def test_threshold_out_of_range_or_nan_is_refused_before_anything_is_written(
    value: str, tmp_path: Path, real_slices: Path
) -> None:
    code, err = run(str(real_slices / SCAN), "--threshold", value, "--out", str(tmp_path / "out"))
    assert code == 2 and "--threshold" in err
    assert not (tmp_path / "out").exists()


def test_folder_without_scans_and_a_folder_named_like_a_scan_are_errors(tmp_path: Path) -> None:
    empty, named = tmp_path / "empty", tmp_path / "x.png"
    empty.mkdir()
    named.mkdir()
    (empty / "notes.txt").write_text("no scans here")
    code, err = run(str(empty), str(named), "--out", str(tmp_path / "out"))
    assert code == 1
    problem = "no scans found (PNG, TIFF, JPEG, NIfTI or a DICOM series)"
    assert err.splitlines() == [
        f"error: {empty}: {problem}",
        f"error: {named}: {problem}",
        f"0 of 2 input(s) segmented; outputs in {tmp_path / 'out'}",
    ]


def test_sixteen_bit_colour_tiff_is_refused_not_cut(tmp_path: Path) -> None:
    """Pillow would keep the high byte of a 16-bit RGB TIFF; it is refused with a way out instead."""
    path = tmp_path / "rgb16.tif"
    twelve = (np.arange(64 * 64 * 3).reshape(64, 64, 3) % 4096).astype(np.uint16)
    # a minimal uncompressed 16-bit RGB TIFF (Pillow cannot write one)
    header = _rgb16_tiff(twelve)
    path.write_bytes(header)
    try:
        Image.open(path).load()
    except OSError:
        pytest.skip("this Pillow cannot open 16-bit RGB TIFFs at all (then it refuses them itself)")
    with pytest.raises(InputError) as error:
        read_image(path)
    assert "16-bit colour TIFF is not supported" in str(error.value) and "\n" not in str(error.value)


def _rgb16_tiff(pixels: np.ndarray) -> bytes:
    """Little-endian baseline TIFF, one strip, 3 x 16 bits a pixel."""
    import struct

    height, width, _ = pixels.shape
    data = pixels.astype("<u2").tobytes()
    entries = [
        (256, 3, 1, width),
        (257, 3, 1, height),
        (258, 3, 3, 0),
        (259, 3, 1, 1),
        (262, 3, 1, 2),
        (273, 4, 1, 0),
        (277, 3, 1, 3),
        (278, 3, 1, height),
        (279, 4, 1, len(data)),
        (284, 3, 1, 1),
    ]
    ifd_size = 2 + 12 * len(entries) + 4
    bits_at = 8 + ifd_size
    data_at = bits_at + 6
    out = b"II*\x00" + struct.pack("<I", 8) + struct.pack("<H", len(entries))
    for tag, kind, count, value in entries:
        value = {258: bits_at, 273: data_at}.get(tag, value)
        packed = struct.pack("<HI", value, 0)[:4] if kind == 3 and count == 1 else struct.pack("<I", value)
        out += struct.pack("<HHI", tag, kind, count) + packed
    return out + struct.pack("<I", 0) + struct.pack("<HHH", 16, 16, 16) + data


@pytest.mark.parametrize(
    "dtype, low, high",
    [(np.uint16, 0, 4096), (np.uint16, 100, 300), (np.int16, -500, 3000), (np.int32, -10, 10), (np.uint16, 7, 9)],
)
def test_integer_window_is_the_float_rule(dtype, low: int, high: int) -> None:
    """Integer data go through a histogram and a table: the same 8-bit pixels as the float percentile."""
    rng = np.random.default_rng(5)
    for size in (2, 7, 1000, 100_000):
        values = rng.integers(low, high, size=size).astype(dtype)
        as_float = window(values.astype(np.float64), channels_last=False)
        np.testing.assert_array_equal(window(values, channels_last=False), as_float)
