"""`saunet-run INPUT...`: tumour masks, pictures and results.json for MRI slices and volumes, on the device."""

from __future__ import annotations

import json
import math
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import click
import numpy as np

from saunet.runtime import __version__
from saunet.runtime.ensemble import BundledEnsemble, combined
from saunet.runtime.files import OutputError, exit_cleanly_on_signals, remove_files
from saunet.runtime.inputs import Item, collect
from saunet.runtime.interpreter import DelegateError
from saunet.runtime.metadata import ModelError
from saunet.runtime.models import BUNDLED_ENSEMBLE, BUNDLED_MODEL
from saunet.runtime.outputs import prepare_output_folder, summarize, write_outputs, write_results
from saunet.runtime.preprocess import InputError, read_image
from saunet.runtime.report import volume_summary
from saunet.runtime.segmenter import Segmenter
from saunet.runtime.volume_outputs import unique_name, write_volume
from saunet.runtime.volumes import Predict, Volume, postprocess, predict_volume, read_slice_folder


def open_model(model: Path, threads: int | None, delegate: str | None, cpu_fallback: bool) -> Segmenter:
    try:
        return Segmenter(model, threads, delegate)
    except DelegateError as error:
        if not cpu_fallback:
            raise
        click.echo(f"warning: {error}; running on the CPU instead (--cpu-fallback)", err=True)
        return Segmenter(model, threads, None)


@dataclass
class Options:
    """How saunet-run treats every input of one run."""

    threshold: float
    largest_component: bool = True
    fill_holes: bool = True
    overlays: bool = False
    channels: tuple[int, ...] | None = None


def load_volume(item: Item, options: Options) -> Volume:
    """Reads a volume item (InputError names the file and the problem)."""
    if item.kind == "slices":
        return read_slice_folder(item.path, item.files, item.numbers)
    if item.kind == "nifti":
        from saunet.runtime.nifti import read_nifti

        return read_nifti(item.path, options.channels)
    from saunet.runtime.dicom import read_series

    return read_series(item.path)


def segment_volume(item: Item, predict: Predict, options: Options, out: Path, used: set[str]) -> dict:
    """One volume: read, every slice predicted, 3D post-processing, outputs written; its results.json entry."""
    start = time.perf_counter()
    volume = load_volume(item, options)
    probability, _ = predict_volume(volume, predict)
    mask = postprocess(probability, options.threshold, options.largest_component, options.fill_holes)
    written = write_volume(volume, mask, out, unique_name(volume.name, used), used, options.overlays)
    summary = volume_summary(
        volume, probability, mask, options.largest_component, options.fill_holes, time.perf_counter() - start
    )
    return {"input": str(item.path), "volume": summary, **written}


def segment_all(items: list[Item], predict: Predict, options: Options, out: Path) -> list[dict]:
    """Segments each input and writes its outputs; returns one results.json entry per item, in order.

    An input that cannot be read, or whose outputs cannot be written, gets an entry with its
    error (also printed as one line) and the batch goes on. A loose slice's PNGs are written on
    a second thread while the next slice is read and segmented: PNG encoding is most of the
    time outside the model, and Pillow's encoder and the interpreter both release the GIL. One
    write at most is in flight, so memory stays flat on long batches.
    """
    show_progress = any(item.from_folder or item.kind in ("slices", "nifti", "dicom") for item in items)
    results, used = [], set()
    pending = None

    def settle() -> None:
        """Waits for the write in flight; a failed one turns its entry into an error."""
        nonlocal pending
        if pending is None:
            return
        future, index = pending
        pending = None
        try:
            future.result()
        except InputError as error:
            results[index] = {"input": results[index]["input"], "error": str(error)}
            click.echo(f"error: {error}", err=True)

    def fail(item: Item, problem: str, line: str) -> None:
        results.append({"input": str(item.path), "error": problem})
        click.echo(f"error: {line}", err=True)

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="saunet-writer") as writer:
        for number, item in enumerate(items, start=1):
            if item.kind == "error":
                fail(item, item.problem, f"{item.path}: {item.problem}")
                continue
            if item.kind != "slice":
                settle()
                try:
                    results.append(segment_volume(item, predict, options, out, used))
                except InputError as error:
                    fail(item, str(error) if error.path != item.path else error.problem, str(error))
                    continue
                if show_progress:
                    entry = results[-1]["volume"]
                    size = f" ({entry['tumour_ml']} ml)" if entry["tumour_ml"] is not None else ""
                    click.echo(
                        f"[{number}/{len(items)}] {item.path}: {entry['tumour_voxels']} tumour voxels{size} "
                        f"in {len(entry['slices_with_tumour'])} of {entry['slices']} slices",
                        err=True,
                    )
                continue
            path = item.path
            try:
                pixels = read_image(path)
            except InputError as error:
                fail(item, error.problem, str(error))
                stem = unique_name(path.stem, used)  # an earlier run's outputs under this name would now lie
                remove_files(out / f"{stem}_pred.png", out / f"{stem}_overlay.png")
                continue
            prediction = predict(pixels)
            mask = (prediction.probability >= options.threshold).astype(np.uint8)
            stem = unique_name(path.stem, used)
            mask_file, overlay_file = out / f"{stem}_pred.png", out / f"{stem}_overlay.png"
            settle()
            pending = writer.submit(write_outputs, pixels, mask, mask_file, overlay_file), len(results)
            latency = {
                "preprocess": prediction.preprocess_ms,
                "invoke": prediction.invoke_ms,
                "postprocess": prediction.postprocess_ms,
            }
            results.append(
                {
                    "input": str(path),
                    "size": [pixels.shape[1], pixels.shape[0]],
                    **summarize(prediction.probability, mask),
                    "latency_ms": {
                        **{k: round(v, 3) for k, v in latency.items()},
                        "total": round(sum(latency.values()), 3),
                    },
                    "mask": str(mask_file),
                    "overlay": str(overlay_file),
                }
            )
            if show_progress:
                click.echo(f"[{number}/{len(items)}] {path}: {results[-1]['tumour_pixels']} tumour pixels", err=True)
        settle()
    return results


def check_threshold(ctx: click.Context, param: click.Parameter, value: float | None) -> float | None:
    """click's FloatRange lets NaN through (every comparison with it is false)."""
    if value is not None and not math.isfinite(value):
        raise click.BadParameter(f"{value} is not a number between 0 and 1")
    return value


def check_ensemble(segmenters: list[Segmenter]) -> None:
    """Models averaged together must agree on the threshold and the channels they read."""
    first = segmenters[0]
    for other in segmenters[1:]:
        if (other.spec.threshold, other.spec.channels) != (first.spec.threshold, first.spec.channels):
            raise ModelError(
                other.path,
                f"threshold {other.spec.threshold} and channels {', '.join(other.spec.channels)} "
                f"differ from {first.path.name}'s; an ensemble needs one of each",
            )


def channel_order(names: str | None, model_channels: tuple[str, ...]) -> tuple[int, ...] | None:
    """`--channels` (a 4D file's sequences, in the file's order) -> the file's index of each model channel."""
    if names is None:
        return None
    given = [n.strip().lower() for n in names.split(",")]
    wanted = [n.lower() for n in model_channels]
    if sorted(given) != sorted(wanted):
        raise click.BadParameter(
            f"{names!r} must name each of {', '.join(model_channels)} once, in the file's order",
            param_hint="--channels",
        )
    return tuple(given.index(n) for n in wanted)


def run_line(models: tuple[Path, ...], given: bool, tta: bool, options: Options) -> str:
    """The line saunet-run prints before the first input: which model files run and how the masks
    are made, so that a user's results can always be traced to what made them."""
    if given:
        what = " + ".join(m.name for m in models) + (" averaged" if len(models) > 1 else "")
    elif models == (BUNDLED_MODEL,):
        what = f"the bundled int8 model {BUNDLED_MODEL.name}"
    else:
        what = f"the bundled ensemble ({len(models)} int8 models averaged; --fast: the single model)"
    steps = ["mirrored scan averaged in"] * tta + [f"threshold {options.threshold:g}"]
    steps += ["largest component kept"] * options.largest_component + ["holes filled"] * options.fill_holes
    return f"model: {what}; {', '.join(steps)}"


def chosen_models(
    models: tuple[Path, ...], fast: bool, tta: bool | None
) -> tuple[tuple[Path, ...], bool, float | None]:
    """The model files to average, whether to mirror, and the threshold if not the models' own: the
    user's models, else the bundled ensemble (as its description says), else the single model."""
    if models:
        return models, bool(tta), None
    if not fast and BUNDLED_ENSEMBLE.is_file():
        ensemble = BundledEnsemble.read(BUNDLED_ENSEMBLE)
        return ensemble.models, ensemble.tta if tta is None else tta, ensemble.threshold
    if not BUNDLED_MODEL.is_file():
        raise ModelError(
            BUNDLED_MODEL,
            "no model is bundled with this install; pass --model FILE.tflite (export one with saunet-export)",
        )
    return (BUNDLED_MODEL,), bool(tta), None


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--model",
    "models",
    type=click.Path(path_type=Path),
    multiple=True,
    help="a .tflite model from saunet-export; repeat it for an ensemble (probabilities averaged) "
    "[default: the bundled ensemble, or the bundled int8 model]",
)
@click.option(
    "--fast",
    is_flag=True,
    help="the bundled single int8 model instead of the bundled ensemble (one model call a slice, not one a member)",
)
@click.option(
    "--tta/--no-tta",
    default=None,
    help="also segment the left-right mirrored scan and average (twice the time) "
    "[default: as the bundled ensemble says; off otherwise]",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=Path("saunet-out"),
    show_default=True,
    help="folder for the masks, pictures and results.json",
)
@click.option("--threads", type=click.IntRange(min=1), default=None, help="CPU threads [default: all cores]")
@click.option("--delegate", default=None, help="'edgetpu' (libedgetpu.so.1) or a path to an external delegate")
@click.option("--cpu-fallback", is_flag=True, help="run on the CPU if the delegate does not load")
@click.option(
    "--threshold",
    type=click.FloatRange(0, 1),
    default=None,
    callback=check_threshold,
    help="tumour probability threshold [default: the bundled ensemble's, else the model's, from its metadata]",
)
@click.option(
    "--largest-component/--all-components",
    default=True,
    show_default=True,
    help="volumes: keep only the largest 6-connected tumour component (the model card's protocol)",
)
@click.option(
    "--fill-holes/--keep-holes",
    default=True,
    show_default=True,
    help="volumes: fill the tumour's enclosed holes in each slice (a dark cystic core the model left out)",
)
@click.option("--overlays", is_flag=True, help="volumes: also write every slice's overlay PNG")
@click.option(
    "--channels",
    default=None,
    metavar="A,B,C",
    help="a 4D NIfTI's three sequences in the file's order [default: the model's order, "
    "pre-contrast,FLAIR,post-contrast]",
)
@click.option("--json", "print_json", is_flag=True, help="print results.json to stdout")
@click.version_option(__version__, prog_name="saunet-run")
@exit_cleanly_on_signals()
def main(
    inputs,
    models,
    fast,
    tta,
    out,
    threads,
    delegate,
    cpu_fallback,
    threshold,
    largest_component,
    fill_holes,
    overlays,
    channels,
    print_json,
) -> None:
    """Segment FLAIR abnormality in brain MRI: slices (PNG, TIFF, JPEG), a folder of one patient's numbered
    slices, NIfTI volumes (.nii, .nii.gz) or a DICOM series folder; folders of those too.

    Not a medical device: for research on lower-grade glioma MRI only.
    """
    if models and fast:
        click.echo("error: --fast picks the bundled single model; it does not go with --model", err=True)
        sys.exit(2)
    given = bool(models)
    try:
        models, tta, chosen_threshold = chosen_models(models, fast, tta)
    except ModelError as error:
        click.echo(f"error: {error}", err=True)
        sys.exit(2)
    try:
        segmenters = [open_model(m, threads, delegate, cpu_fallback) for m in models]
        check_ensemble(segmenters)
    except (ModelError, DelegateError, RuntimeError) as error:
        click.echo(f"error: {error}", err=True)
        sys.exit(1)
    segmenter = segmenters[0]
    if threshold is None:
        threshold = segmenter.spec.threshold if chosen_threshold is None else chosen_threshold
    options = Options(
        threshold,
        largest_component,
        fill_holes,
        overlays,
        channel_order(channels, segmenter.spec.channels),
    )

    try:
        prepare_output_folder(out)
    except OutputError as error:
        click.echo(f"error: {error}", err=True)
        sys.exit(1)
    click.echo(run_line(models, given, tta, options), err=True)
    items, notes = collect(inputs)
    for note in notes:
        click.echo(note, err=True)
    results = segment_all(items, combined(segmenters, tta), options, out)
    failures = sum("error" in item for item in results)
    report = {
        "model": str(models[0]) if len(models) == 1 else [str(m) for m in models],
        "tta": tta,
        "backend": segmenter.backend,
        "delegate": segmenter.delegate,
        "threshold": options.threshold,
        "largest_component": options.largest_component,
        "holes_filled": options.fill_holes,
        "saunet": __version__,
        "results": results,
    }
    try:
        write_results(out, report)
    except OutputError as error:
        click.echo(f"error: {error}", err=True)
        sys.exit(1)
    if print_json:
        click.echo(json.dumps(report, indent=2))
    click.echo(f"{len(items) - failures} of {len(items)} input(s) segmented; outputs in {out}", err=True)
    sys.exit(1 if failures else 0)
