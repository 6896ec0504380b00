"""saunet-run on patients: slice folders, NIfTI and DICOM give the masks the slice path gives for the same pixels."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from saunet.runtime import cli
from saunet.runtime.components import fill_holes_2d, largest_component
from saunet.runtime.preprocess import read_image

from conftest import run_device as run

CASE = "TCGA_CS_6186_20000601"
#: The bundled slices of one patient, renumbered 1..3 so that they form a (short) volume.
SLICES = (3, 16, 18)
#: The data set's voxel order (rows A->P, columns R->L, slices I->S) as a NIfTI affine, 0.5 x 0.5 x 5 mm.
PLS_AFFINE = np.array([[0, -0.5, 0, 60], [-0.5, 0, 0, 70], [0, 0, 5.0, -20], [0, 0, 0, 1]])


@pytest.fixture(scope="module")
def case(tmp_path_factory: pytest.TempPathFactory, real_slices: Path) -> Path:
    folder = tmp_path_factory.mktemp("case") / CASE
    folder.mkdir()
    for n, number in enumerate(SLICES, start=1):
        shutil.copy(real_slices / f"{CASE}_{number}.png", folder / f"{CASE}_{n}.png")
        shutil.copy(real_slices / f"{CASE}_{number}_mask.png", folder / f"{CASE}_{n}_mask.png")
    return folder


@pytest.fixture(scope="module")
def stack(case: Path) -> np.ndarray:
    """slices x H x W x 3, the data set's orientation."""
    return np.stack([read_image(case / f"{CASE}_{n}.png") for n in range(1, len(SLICES) + 1)])


@pytest.fixture(scope="module")
def slice_masks(case: Path, tmp_path_factory: pytest.TempPathFactory) -> np.ndarray:
    """The slice path: each slice segmented on its own, as loose files (no 3D post-processing)."""
    out = tmp_path_factory.mktemp("loose")
    files = [str(case / f"{CASE}_{n}.png") for n in range(1, len(SLICES) + 1)]
    code, err = run(*files, "--out", str(out))
    assert code == 0, err
    masks = np.stack([np.asarray(Image.open(out / f"{CASE}_{n}_pred.png")) > 0 for n in range(1, len(SLICES) + 1)])
    assert masks.any(), "the bundled slices hold tumour: the comparison must not be of empty masks"
    return masks


def results(out: Path) -> list[dict]:
    return json.loads((out / "results.json").read_text())["results"]


def write_nifti(path: Path, stack: np.ndarray) -> nib.Nifti1Image:
    image = nib.Nifti1Image(np.moveaxis(stack, 0, 2), PLS_AFFINE)  # H x W x slices x 3
    assert nib.aff2axcodes(image.affine) == ("P", "L", "S")
    nib.save(image, path)
    return image


def seg_in_kaggle_order(path: Path) -> np.ndarray:
    """A written seg file's mask as slices x H x W in the data set's orientation."""
    image = nib.load(path)
    data = np.asanyarray(image.dataobj)
    turn = nib.orientations.ornt_transform(nib.io_orientation(image.affine), nib.orientations.axcodes2ornt("PLS"))
    return np.moveaxis(nib.orientations.apply_orientation(data, turn), 2, 0)


def test_slice_folder_is_a_volume_with_the_slice_paths_masks(
    case: Path, slice_masks: np.ndarray, tmp_path: Path
) -> None:
    code, err = run(str(case), "--out", str(tmp_path / "all"), "--all-components")
    assert code == 0, err
    (entry,) = results(tmp_path / "all")
    got = np.stack([np.asarray(Image.open(p)) > 0 for p in entry["masks"]])
    np.testing.assert_array_equal(got, slice_masks)
    assert entry["volume"]["tumour_voxels"] == int(slice_masks.sum())
    assert entry["volume"]["tumour_ml"] is None and entry["volume"]["voxel_ml"] is None
    assert entry["volume"]["slices_with_tumour"] == [n for n in (1, 2, 3) if slice_masks[n - 1].any()]

    code, err = run(str(case), "--out", str(tmp_path / "lcc"), "--keep-holes")
    assert code == 0, err
    (entry,) = results(tmp_path / "lcc")
    got = np.stack([np.asarray(Image.open(p)) > 0 for p in entry["masks"]])
    np.testing.assert_array_equal(got, largest_component(slice_masks))
    assert entry["volume"]["largest_component"] is True and entry["volume"]["holes_filled"] is False
    assert Path(entry["montage"]).is_file() and "overlays" not in entry

    code, err = run(str(case), "--out", str(tmp_path / "default"))
    assert code == 0, err
    (entry,) = results(tmp_path / "default")
    got = np.stack([np.asarray(Image.open(p)) > 0 for p in entry["masks"]])
    np.testing.assert_array_equal(got, fill_holes_2d(largest_component(slice_masks)))
    assert entry["volume"]["holes_filled"] is True
    assert json.loads((tmp_path / "default" / "results.json").read_text())["holes_filled"] is True


def test_nifti_gives_the_slice_paths_masks_in_its_own_geometry(
    stack: np.ndarray, slice_masks: np.ndarray, tmp_path: Path
) -> None:
    source = write_nifti(tmp_path / "patient.nii.gz", stack)
    code, err = run(str(tmp_path / "patient.nii.gz"), "--out", str(tmp_path / "out"), "--all-components")
    assert code == 0, err
    (entry,) = results(tmp_path / "out")
    seg = nib.load(entry["seg"])
    assert entry["seg"] == str(tmp_path / "out" / "patient_seg.nii.gz")
    assert seg.shape == source.shape[:3] and seg.get_data_dtype() == np.uint8
    np.testing.assert_allclose(seg.affine, source.affine)
    np.testing.assert_array_equal(np.asanyarray(seg.dataobj), np.moveaxis(slice_masks, 0, 2).astype(np.uint8))
    volume = entry["volume"]
    assert volume["voxel_ml"] == pytest.approx(0.5 * 0.5 * 5 / 1000)
    assert volume["tumour_ml"] == pytest.approx(slice_masks.sum() * 0.5 * 0.5 * 5 / 1000, abs=1e-4)
    assert Path(entry["montage"]).is_file()


def test_reoriented_nifti_gives_the_reoriented_mask_back(stack: np.ndarray, tmp_path: Path) -> None:
    """The same anatomy stored in RAS voxel order (what as_closest_canonical gives), and in a
    swapped-and-flipped order: each mask comes back in its own file's order and equals the others'."""
    pls = write_nifti(tmp_path / "pls.nii.gz", stack)
    ras = nib.as_closest_canonical(pls)
    assert nib.aff2axcodes(ras.affine) == ("R", "A", "S")
    nib.save(ras, tmp_path / "ras.nii")
    odd = ras.as_reoriented(
        nib.orientations.ornt_transform(nib.io_orientation(ras.affine), nib.orientations.axcodes2ornt(("S", "R", "P")))
    )
    assert nib.aff2axcodes(odd.affine) == ("S", "R", "P")
    nib.save(odd, tmp_path / "odd.nii.gz")
    names = ("pls.nii.gz", "ras.nii", "odd.nii.gz")
    code, err = run(*(str(tmp_path / n) for n in names), "--out", str(tmp_path / "out"))
    assert code == 0, err
    entries = results(tmp_path / "out")
    masks = []
    for name, image, entry in zip(names, (pls, ras, odd), entries):
        seg = nib.load(entry["seg"])
        assert seg.shape == image.shape[:3], name
        np.testing.assert_allclose(seg.affine, image.affine)
        masks.append(seg_in_kaggle_order(Path(entry["seg"])))
    assert masks[0].any()
    for mask in masks[1:]:
        np.testing.assert_array_equal(mask, masks[0])
    assert entries[0]["volume"]["slices_with_tumour"] == entries[1]["volume"]["slices_with_tumour"]


def test_2d_nifti_is_a_one_line_error(tmp_path: Path) -> None:
    path = tmp_path / "slice.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((16, 16), np.uint8), np.eye(4)), path)
    code, err = run(str(path), "--out", str(tmp_path / "out"))
    assert code == 1
    assert err.splitlines()[0].startswith(f"error: {path}: a 2D image of shape (16, 16)")
    assert len([line for line in err.splitlines() if line.startswith("error")]) == 1


def write_dicom(
    path: Path,
    pixels: np.ndarray,
    z: float,
    series: str,
    instance: int,
    description: str = "FLAIR",
    spacing: float = 0.5,
) -> None:
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MRImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = MRImageStorage, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.SeriesInstanceUID, ds.SeriesDescription, ds.InstanceNumber = "MR", series, description, instance
    ds.Rows, ds.Columns = pixels.shape[:2]
    rgb = pixels.ndim == 3
    ds.SamplesPerPixel, ds.PhotometricInterpretation = (3, "RGB") if rgb else (1, "MONOCHROME2")
    if rgb:
        ds.PlanarConfiguration = 0
    bits = pixels.dtype.itemsize * 8
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = bits, bits, bits - 1, 0
    # Rows run anterior to posterior (+y in DICOM's LPS), columns right to left (+x), slices upward (+z).
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.ImagePositionPatient = [-60.0, -70.0, z]
    ds.PixelSpacing = [spacing, spacing]
    ds.PixelData = np.ascontiguousarray(pixels).tobytes()
    ds.save_as(path, enforce_file_format=True)


def test_dicom_series_is_ordered_by_position_and_gives_the_slice_paths_masks(
    stack: np.ndarray, slice_masks: np.ndarray, tmp_path: Path
) -> None:
    """File names and InstanceNumbers run against the anatomy; only the positions tell the order."""
    series = tmp_path / "series"
    series.mkdir()
    for k, pixels in enumerate(stack):
        write_dicom(series / f"IM{len(stack) - k:04d}", pixels, z=5.0 * k, series="1.2.3.4", instance=len(stack) - k)
    code, err = run(str(series), "--out", str(tmp_path / "out"), "--all-components")
    assert code == 0, err
    (entry,) = results(tmp_path / "out")
    np.testing.assert_array_equal(seg_in_kaggle_order(Path(entry["seg"])), slice_masks)
    assert entry["volume"]["kind"] == "dicom"
    assert entry["volume"]["voxel_ml"] == pytest.approx(0.5 * 0.5 * 5 / 1000)
    tumour = [k for k in range(len(stack)) if slice_masks[k].any()]
    assert entry["volume"]["slices_with_tumour"] == [len(stack) - k for k in tumour]


def test_two_series_in_one_folder_is_a_one_line_error_naming_both(stack: np.ndarray, tmp_path: Path) -> None:
    folder = tmp_path / "mixed"
    folder.mkdir()
    write_dicom(folder / "a.dcm", stack[0, :, :, 1], z=0, series="1.2.3.1", instance=1, description="FLAIR")
    write_dicom(folder / "b.dcm", stack[1, :, :, 1], z=5, series="1.2.3.2", instance=1, description="T1")
    code, err = run(str(folder), "--out", str(tmp_path / "out"))
    assert code == 1
    (line,) = [line for line in err.splitlines() if line.startswith("error")]
    assert line.startswith(f"error: {folder}: 2 DICOM series in one folder")
    assert "1.2.3.1 (FLAIR, 1 files)" in line and "1.2.3.2 (T1, 1 files)" in line


def test_16_bit_dicom_mask_equals_the_mask_of_its_8_bit_window(stack: np.ndarray, tmp_path: Path) -> None:
    """A 12-bit grey series (FLAIR) gives the mask of the same pixels windowed and stored as 8-bit slices."""
    flair12 = stack[..., 1].astype(np.uint16) * 16 + 5
    series = tmp_path / "series"
    series.mkdir()
    for k, pixels in enumerate(flair12):
        write_dicom(series / f"{k}.dcm", pixels, z=5.0 * k, series="1.2.3", instance=k + 1)
    from saunet.runtime.intensity import window

    eight = window(flair12, channels_last=False)
    plain = tmp_path / "plain" / "TCGA_XX_0001_20000101"
    plain.mkdir(parents=True)
    for k, pixels in enumerate(eight):
        Image.fromarray(pixels).save(plain / f"TCGA_XX_0001_20000101_{k + 1}.png")
    code, err = run(str(series), str(plain), "--out", str(tmp_path / "out"))
    assert code == 0, err
    dicom, slices = results(tmp_path / "out")
    from_slices = np.stack([np.asarray(Image.open(p)) > 0 for p in slices["masks"]])
    assert from_slices.any()
    np.testing.assert_array_equal(seg_in_kaggle_order(Path(dicom["seg"])), from_slices)


def test_folder_of_case_folders_is_many_volumes_and_gaps_stay_slices(case: Path, tmp_path: Path) -> None:
    root = tmp_path / "patients"
    shutil.copytree(case, root / CASE)
    gappy = root / "TCGA_XX_0002_20000101"
    gappy.mkdir()
    for n in (1, 3):
        shutil.copy(case / f"{CASE}_{n}.png", gappy / f"TCGA_XX_0002_20000101_{n}.png")
    result = CliRunner().invoke(cli.main, [str(root), "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.stderr
    entries = results(tmp_path / "out")
    assert [("volume" in e, Path(e["input"]).name) for e in entries] == [
        (True, CASE),
        (False, "TCGA_XX_0002_20000101_1.png"),
        (False, "TCGA_XX_0002_20000101_3.png"),
    ]
    assert f"note: {gappy}: the slices of TCGA_XX_0002_20000101 are not consecutive" in result.stderr


def test_a_volumes_enclosed_core_is_filled_by_default_and_kept_with_keep_holes(
    stack: np.ndarray, tmp_path: Path
) -> None:
    """The model's typical miss, a bright rim around a dark core, comes out whole unless asked otherwise."""
    from saunet.runtime.inputs import Item
    from saunet.runtime.segmenter import Prediction

    write_nifti(tmp_path / "p.nii.gz", stack)
    ring = np.zeros(stack.shape[1:3], np.float32)
    ring[20:60, 20:60] = 0.9
    ring[30:50, 30:50] = 0.1

    def predict(pixels: np.ndarray) -> Prediction:
        return Prediction(ring, 0.0, 0.0, 0.0)

    for fill in (True, False):
        options = cli.Options(0.5, fill_holes=fill)
        entry = cli.segment_volume(Item(tmp_path / "p.nii.gz", "nifti"), predict, options, tmp_path / f"{fill}", set())
        seg = seg_in_kaggle_order(entry["seg"])
        assert seg[:, 20:60, 20:60].sum() == len(stack) * (1600 if fill else 1200)
        assert seg.sum() == seg[:, 20:60, 20:60].sum()
        assert entry["volume"]["holes_filled"] is fill


def test_overlays_are_an_option_for_volumes(stack: np.ndarray, tmp_path: Path) -> None:
    write_nifti(tmp_path / "p.nii.gz", stack)
    code, err = run(str(tmp_path / "p.nii.gz"), "--out", str(tmp_path / "out"), "--overlays")
    assert code == 0, err
    (entry,) = results(tmp_path / "out")
    assert len(entry["overlays"]) == len(stack) and all(Path(p).is_file() for p in entry["overlays"])


def test_volume_path_needs_no_tensorflow(stack: np.ndarray, tmp_path: Path) -> None:
    """NIfTI and DICOM reading (nibabel, pydicom) stay on the device's side: no TensorFlow import."""
    import subprocess
    import sys

    from conftest import BLOCK_TENSORFLOW

    write_nifti(tmp_path / "p.nii.gz", stack)
    code = (
        BLOCK_TENSORFLOW
        + """
from saunet.runtime.cli import main
try:
    main()
finally:
    heavy = [m for m in sys.modules if m.split(".")[0] in ("tensorflow", "tf_keras", "keras")]
    assert not heavy, heavy
    assert "nibabel" in sys.modules
"""
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "p.nii.gz"), "--out", str(tmp_path / "out")],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out" / "p_seg.nii.gz").is_file()


def test_channels_names_a_4d_files_own_sequence_order(stack: np.ndarray, tmp_path: Path) -> None:
    write_nifti(tmp_path / "model_order.nii.gz", stack)
    # the same scan stored as FLAIR, post-contrast, pre-contrast
    write_nifti(tmp_path / "other_order.nii.gz", stack[..., [1, 2, 0]])
    code, err = run(str(tmp_path / "model_order.nii.gz"), "--out", str(tmp_path / "a"))
    assert code == 0, err
    code, err = run(
        str(tmp_path / "other_order.nii.gz"),
        "--channels",
        "FLAIR,post-contrast,pre-contrast",
        "--out",
        str(tmp_path / "b"),
    )
    assert code == 0, err
    (a,), (b,) = results(tmp_path / "a"), results(tmp_path / "b")
    assert a["volume"]["tumour_voxels"] > 0
    np.testing.assert_array_equal(np.asanyarray(nib.load(a["seg"]).dataobj), np.asanyarray(nib.load(b["seg"]).dataobj))
    code, err = run(
        str(tmp_path / "other_order.nii.gz"), "--channels", "FLAIR,T2,pre-contrast", "--out", str(tmp_path / "c")
    )
    assert code == 2 and "--channels" in err and not (tmp_path / "c").exists()


def test_broken_nifti_files_are_one_line_errors_and_the_batch_goes_on(stack: np.ndarray, tmp_path: Path) -> None:
    good = tmp_path / "good.nii.gz"
    write_nifti(good, stack)
    data = good.read_bytes()
    broken = {
        "truncated.nii.gz": data[: len(data) // 2],
        "empty.nii": b"",
        "random.nii": bytes(range(256)) * 4,
        "corrupt.nii.gz": data[:2000] + bytes(b ^ 0x55 for b in data[2000:3000]) + data[3000:],
    }
    for name, content in broken.items():
        (tmp_path / name).write_bytes(content)
    code, err = run(*(str(tmp_path / n) for n in broken), str(good), "--out", str(tmp_path / "out"))
    assert code == 1
    errors = err.splitlines()[:-2]
    assert [line.split(": ")[1] for line in errors] == [str(tmp_path / n) for n in broken], err
    assert all(": not a readable NIfTI file (" in line for line in errors), err
    assert "error" not in results(tmp_path / "out")[-1]


def test_a_damaged_dicom_file_is_one_line_naming_it(stack: np.ndarray, tmp_path: Path) -> None:
    series = tmp_path / "series"
    series.mkdir()
    for k, pixels in enumerate(stack[..., 1]):
        write_dicom(series / f"{k}.dcm", pixels, z=5.0 * k, series="1.2.3", instance=k + 1)
    damaged = series / "1.dcm"
    damaged.write_bytes(damaged.read_bytes()[:400])
    code, err = run(str(series), "--out", str(tmp_path / "out"))
    assert code == 1
    (line,) = [line for line in err.splitlines() if line.startswith("error")]
    assert line.startswith(f"error: {damaged}: ")


def test_multi_frame_dicom_is_refused_in_one_line(stack: np.ndarray, tmp_path: Path) -> None:
    series = tmp_path / "enhanced"
    series.mkdir()
    frames = np.ascontiguousarray(stack[..., 1])
    write_dicom(series / "all.dcm", frames[0], z=0, series="1.2.3", instance=1)
    import pydicom

    dataset = pydicom.dcmread(series / "all.dcm")
    dataset.NumberOfFrames = len(frames)
    dataset.PixelData = frames.tobytes()
    dataset.save_as(series / "all.dcm", enforce_file_format=True)
    code, err = run(str(series), "--out", str(tmp_path / "out"))
    assert code == 1
    assert err.splitlines()[0] == (
        f"error: {series / 'all.dcm'}: a multi-frame DICOM file (3 frames); saunet-run "
        "reads series of single-frame files (most converters can write those)"
    )


def test_a_volume_whose_output_cannot_be_written_leaves_no_file_and_the_batch_goes_on(
    stack: np.ndarray, tmp_path: Path
) -> None:
    write_nifti(tmp_path / "a.nii.gz", stack)
    write_nifti(tmp_path / "b.nii.gz", stack)
    out = tmp_path / "out"
    (out / "a_montage.png").mkdir(parents=True)  # a folder where a's montage should go
    code, err = run(str(tmp_path / "a.nii.gz"), str(tmp_path / "b.nii.gz"), "--out", str(out))
    assert code == 1
    (line,) = [line for line in err.splitlines() if line.startswith("error")]
    assert line.startswith(f"error: {out / 'a_montage.png'}: cannot be written")
    first, second = results(out)
    assert "error" in first and "error" not in second
    assert not (out / "a_seg.nii.gz").exists(), "the seg file of a volume whose entry is an error must go"
    assert (out / "b_seg.nii.gz").is_file() and (out / "b_montage.png").is_file()
    assert not list(out.glob(".*partial*"))
