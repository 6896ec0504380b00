"""`saunet-run INPUT...`: tumour masks, overlays and results.json for MRI slices, on the device."""
from __future__ import annotations

import json
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import click
import numpy as np

from saunet.runtime import __version__
from saunet.runtime.files import write_text
from saunet.runtime.interpreter import DelegateError
from saunet.runtime.metadata import ModelError
from saunet.runtime.models import BUNDLED_MODEL
from saunet.runtime.outputs import summarize, write_outputs
from saunet.runtime.preprocess import IMAGE_SUFFIXES, InputError, read_image
from saunet.runtime.segmenter import Segmenter



def collect(inputs: tuple[Path, ...]) -> list[tuple[Path, bool]]:
    """Expands folders to their scans (not `*_mask.*`); (path, came from a folder) per item."""
    items = []
    for path in inputs:
        if path.is_dir():
            items += [(p, True) for p in sorted(path.iterdir())
                      if p.suffix.lower() in IMAGE_SUFFIXES and not p.stem.endswith("_mask") and p.is_file()]
        else:
            items.append((path, False))
    return items


def unique_stem(path: Path, used: set[str]) -> str:
    """The output name for an input: its stem, numbered if another input had the same one."""
    stem, n = path.stem, 2
    while stem in used:
        stem, n = f"{path.stem}_{n}", n + 1
    used.add(stem)
    return stem


def open_model(model: Path, threads: int | None, delegate: str | None, cpu_fallback: bool) -> Segmenter:
    try:
        return Segmenter(model, threads, delegate)
    except DelegateError as error:
        if not cpu_fallback:
            raise
        click.echo(f"warning: {error}; running on the CPU instead (--cpu-fallback)", err=True)
        return Segmenter(model, threads, None)


def segment_all(items: list[tuple[Path, bool]], segmenter: Segmenter, threshold: float, out: Path) -> list[dict]:
    """Segments each scan and writes its PNGs; returns one results.json entry per item, in order.

    A scan that cannot be read, or whose outputs cannot be written, gets an entry with its
    error (also printed as one line) and the batch goes on. Each scan's PNGs are written on a
    second thread while the next scan is read and segmented: PNG encoding is most of the time
    outside the model, and Pillow's encoder and the interpreter both release the GIL. One
    write at most is in flight, so memory stays flat on long batches.
    """
    show_progress = any(from_folder for _, from_folder in items)
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

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="saunet-writer") as writer:
        for number, (path, _) in enumerate(items, start=1):
            try:
                pixels = read_image(path)
            except InputError as error:
                results.append({"input": str(path), "error": error.problem})
                click.echo(f"error: {error}", err=True)
                continue
            prediction = segmenter.predict(pixels)
            mask = (prediction.probability >= threshold).astype(np.uint8)
            stem = unique_stem(path, used)
            mask_file, overlay_file = out / f"{stem}_pred.png", out / f"{stem}_overlay.png"
            settle()
            pending = writer.submit(write_outputs, pixels, mask, mask_file, overlay_file), len(results)
            latency = {"preprocess": prediction.preprocess_ms, "invoke": prediction.invoke_ms,
                       "postprocess": prediction.postprocess_ms}
            results.append({"input": str(path), "size": [pixels.shape[1], pixels.shape[0]],
                            **summarize(prediction.probability, mask),
                            "latency_ms": {**{k: round(v, 3) for k, v in latency.items()},
                                           "total": round(sum(latency.values()), 3)},
                            "mask": str(mask_file), "overlay": str(overlay_file)})
            if show_progress:
                click.echo(f"[{number}/{len(items)}] {path}: {results[-1]['tumour_pixels']} tumour pixels", err=True)
        settle()
    return results


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--model", type=click.Path(path_type=Path), default=None,
              help="a .tflite model from saunet-export [default: the bundled int8 model]")
@click.option("--out", type=click.Path(path_type=Path), default=Path("saunet-out"), show_default=True,
              help="folder for <stem>_pred.png, <stem>_overlay.png and results.json")
@click.option("--threads", type=click.IntRange(min=1), default=None, help="CPU threads [default: all cores]")
@click.option("--delegate", default=None, help="'edgetpu' (libedgetpu.so.1) or a path to an external delegate")
@click.option("--cpu-fallback", is_flag=True, help="run on the CPU if the delegate does not load")
@click.option("--threshold", type=click.FloatRange(0, 1), default=None,
              help="tumour probability threshold [default: the model's, from its metadata]")
@click.option("--json", "print_json", is_flag=True, help="print results.json to stdout")
@click.version_option(__version__, prog_name="saunet-run")
def main(inputs, model, out, threads, delegate, cpu_fallback, threshold, print_json) -> None:
    """Segment FLAIR abnormality in brain-MRI slices (PNG, TIFF or JPEG files, or folders of them).

    Not a medical device: for research on lower-grade glioma MRI only.
    """
    if model is None:
        if not BUNDLED_MODEL.is_file():
            click.echo("error: no model is bundled with this install yet; pass --model FILE.tflite "
                       "(export one with saunet-export)", err=True)
            sys.exit(2)
        model = BUNDLED_MODEL
    try:
        segmenter = open_model(model, threads, delegate, cpu_fallback)
    except (ModelError, DelegateError, RuntimeError) as error:
        click.echo(f"error: {error}", err=True)
        sys.exit(1)
    threshold = segmenter.spec.threshold if threshold is None else threshold

    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        click.echo(f"error: {out}: cannot create the output folder ({error.strerror or error})", err=True)
        sys.exit(1)
    items = collect(inputs)
    results = segment_all(items, segmenter, threshold, out)
    failures = sum("error" in item for item in results)
    report = {"model": str(model), "backend": segmenter.backend, "delegate": segmenter.delegate,
              "threshold": threshold, "saunet": __version__, "results": results}
    write_text(out / "results.json", json.dumps(report, indent=2) + "\n")
    if print_json:
        click.echo(json.dumps(report, indent=2))
    click.echo(f"{len(items) - failures} of {len(items)} input(s) segmented; outputs in {out}", err=True)
    sys.exit(1 if failures else 0)

