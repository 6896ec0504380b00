"""One patient volume through saunet-run end to end, against the model's invoke time for the same slices.

    python -m saunet.benchmarks.volume_end_to_end --data data/kaggle_3m [--case NAME] [--model M.tflite]
        [--repeats 5] [--json REPORT.json]

The volume is a real patient's slices stored as one 4D NIfTI of 16-bit values (the 8-bit data
times 16, as a 12-bit scanner export), so the run covers what a user's NIfTI costs: reading
and decompressing it, turning it to the data set's orientation, the 8-bit window, every slice
through Segmenter.predict (resize, normalisation, invoke, resize back), the largest 3D
component, and `<name>_seg.nii.gz` and `<name>_montage.png` written (saunet-run's own
segment_volume). Against it: Segmenter.run alone (the interpreter's invoke) on the same
slices' prepared inputs. Both are timed in turns in one process, with 1 and 2 threads;
medians of --repeats. Goal (issue 21): end to end at most 1.3 x the invokes.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np

from saunet.benchmarks.report import stamped, write_json
from saunet.runtime.cli import Options, segment_volume
from saunet.runtime.inputs import Item, folder_items
from saunet.runtime.models import BUNDLED_MODEL
from saunet.runtime.nifti import read_nifti
from saunet.runtime.segmenter import Segmenter
from saunet.runtime.volume_outputs import write_volume
from saunet.runtime.volumes import postprocess, predict_volume, read_slice_folder

GOAL = 1.3
SPLIT = Path(__file__).resolve().parents[1] / "runtime" / "models" / "saunet_float.json"


def write_patient_nifti(case: Path, path: Path) -> int:
    """The case's slices as a 16-bit 4D NIfTI in the data set's voxel order (P, L, S), 1 x 1 x 3 mm; its slice count."""
    (item,), _ = folder_items(case, depth=0)
    volume = read_slice_folder(item.path, item.files, item.numbers)
    affine = np.array([[0, -1.0, 0, 0], [-1.0, 0, 0, 0], [0, 0, 3.0, 0], [0, 0, 0, 1]])
    nib.save(nib.Nifti1Image(np.moveaxis(volume.pixels.astype(np.int16) * 16, 0, 2), affine), path)
    return len(volume.pixels)


def stages(segmenter: Segmenter, nifti: Path, out: Path, options: Options) -> dict[str, float]:
    """The same steps as segment_volume, one by one, each timed (s): where the end-to-end time goes."""
    times = {}
    started = time.perf_counter()
    volume = read_nifti(nifti)
    times["read, orient, 8-bit window"] = time.perf_counter() - started
    started = time.perf_counter()
    probability, invoke_ms = predict_volume(volume, segmenter.predict)
    times["predict: invokes"] = invoke_ms / 1e3
    times["predict: resize, normalise, quantise, resize back"] = time.perf_counter() - started - invoke_ms / 1e3
    started = time.perf_counter()
    mask = postprocess(probability, options.threshold, options.largest_component, options.fill_holes)
    times["threshold, largest 3D component, holes filled"] = time.perf_counter() - started
    started = time.perf_counter()
    write_volume(volume, mask, out, "stages", set(), overlays=False)
    times["write seg.nii.gz and montage.png"] = time.perf_counter() - started
    return times


def measure(segmenter: Segmenter, nifti: Path, out: Path, repeats: int) -> dict:
    """Medians over `repeats` of: segment_volume, the invokes alone, and each step of segment_volume."""
    options = Options(segmenter.spec.threshold)
    item = Item(nifti, "nifti")
    entry = segment_volume(item, segmenter.predict, options, out, set())  # warm-up
    inputs = [segmenter.model_input(p) for p in read_nifti(nifti).pixels]
    end_to_end, invokes, steps = [], [], []
    for _ in range(repeats):
        started = time.perf_counter()
        segment_volume(item, segmenter.predict, options, out, set())
        end_to_end.append(time.perf_counter() - started)
        started = time.perf_counter()
        for x in inputs:
            segmenter.run(x)
        invokes.append(time.perf_counter() - started)
        steps.append(stages(segmenter, nifti, out, options))
    e2e, inv = statistics.median(end_to_end), statistics.median(invokes)
    return {
        "slices": len(inputs),
        "end_to_end_s": round(e2e, 4),
        "invokes_s": round(inv, 4),
        "ratio": round(e2e / inv, 3),
        "end_to_end_all_s": [round(t, 4) for t in end_to_end],
        "invokes_all_s": [round(t, 4) for t in invokes],
        "steps_median_s": {k: round(statistics.median(s[k] for s in steps), 4) for k in steps[0]},
        "tumour_voxels": entry["volume"]["tumour_voxels"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="the Kaggle layout (kaggle_3m)")
    parser.add_argument(
        "--case", default=None, help="patient folder name [default: the bundled model's first validation patient]"
    )
    parser.add_argument("--model", type=Path, default=BUNDLED_MODEL)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--suffix",
        choices=(".nii.gz", ".nii"),
        default=".nii.gz",
        help="store the volume gzipped (as most pipelines write NIfTI) or not",
    )
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    case = args.case or json.loads(SPLIT.read_text())["split"]["val"][0]
    rows = {}
    with tempfile.TemporaryDirectory() as folder:
        nifti = Path(folder) / f"{case}{args.suffix}"
        write_patient_nifti(args.data / case, nifti)
        for threads in (1, 2):
            rows[threads] = measure(Segmenter(args.model, threads), nifti, Path(folder) / "out", args.repeats)
            row = rows[threads]
            print(
                f"{threads} thread(s), {case} ({row['slices']} slices): end to end {row['end_to_end_s']:.3f} s, "
                f"invokes {row['invokes_s']:.3f} s, ratio {row['ratio']:.2f} (goal <= {GOAL})"
            )
            for step, seconds in row["steps_median_s"].items():
                print(f"    {step}: {seconds:.3f} s")
    if args.json:
        write_json(
            args.json,
            stamped(
                {
                    "model": str(args.model),
                    "case": case,
                    "file": nifti.name,
                    "goal_ratio": GOAL,
                    "threads": rows,
                }
            ),
        )


if __name__ == "__main__":
    main()
