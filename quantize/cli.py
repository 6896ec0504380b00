"""`saunet-export RUN_OR_MODEL --int8`: TFLite models with their metadata and a parity report."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import click

import saunet.quantize  # noqa: F401  (Keras 2 before TensorFlow)
<<<<<<< HEAD
from saunet.quantize.formats import BY_NAME, table
from saunet.runtime.files import atomic_path
from saunet.runtime.interpreter import NoInterpreterError, find_backend
=======
from saunet.quantize.formats import BY_NAME, FORMATS, table
from saunet.quantize.pipeline import check_edgetpu, export
>>>>>>> main
from saunet.runtime.metadata import ModelError
from saunet.runtime.options import FiniteFloatRange
from saunet.runtime.preprocess import InputError
from saunet.training.dataset import DataError

FAILURES = (DataError, InputError, ModelError, NoInterpreterError, ValueError, OSError)


def format_flags(command):
    """One flag a format of the table (quantize/formats.py), so flags, files and rows cannot drift apart."""
    for fmt in reversed(FORMATS):
        command = click.option(fmt.flag, "formats", flag_value=fmt.name, multiple=True,
                               help=f"{fmt.name}: {fmt.quantization}")(command)
    return command


@click.command(context_settings={"help_option_names": ["-h", "--help"], "show_default": True},
               epilog="\b\nFormats:\n" + table())
@click.argument("source", type=click.Path(path_type=Path))
@format_flags
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="output file (one format) or name stem [default: RUN/export/saunet_<format>.tflite]")
@click.option("--data", type=click.Path(path_type=Path), default=None, help="data folder [default: the run's]")
@click.option("--qat-epochs", type=click.IntRange(min=1), default=2, help="quantization-aware fine-tuning epochs")
@click.option("--qat-lr", type=FiniteFloatRange(0.0, 1.0, min_open=True), default=1e-5,
              help="quantization-aware fine-tuning learning rate")
@click.option("--qat-steps", type=click.IntRange(min=1), default=None,
              help="steps per QAT epoch [default: all training slices]")
@click.option("--calibration", type=click.IntRange(min=1), default=200,
              help="training slices used to calibrate int8 ranges")
@click.option("--tolerance", type=FiniteFloatRange(0.0, 1.0), default=0.01,
              help="largest allowed drop of mean per-patient Dice")
@click.option("--allow-drop", is_flag=True, help="exit 0 even when an export drops more than --tolerance")
@click.option("--force", is_flag=True, help="overwrite existing output files")
@click.option("--edgetpu", is_flag=True, help="check the int8 model for the Coral Edge TPU (compiler if installed)")
def main(source, formats, out, data, qat_epochs, qat_lr, qat_steps, calibration, tolerance, allow_drop, force,
         edgetpu):
    """Export a trained run (or a .keras file in one) to TFLite, then check parity on validation patients."""
    names = list(dict.fromkeys(formats)) or ["int8"]
    integer = [n for n in names if BY_NAME[n].integer_io]
    if edgetpu and not integer:
        click.echo("error: --edgetpu needs an int8 export (--int8 or --ptq)", err=True)
        sys.exit(1)
    try:
        report = export(source, names, out, data, qat_epochs, qat_lr, qat_steps, calibration, tolerance, force)
        if edgetpu:
            check_edgetpu(Path(report["paths"][integer[0]]))
    except FAILURES as error:
        click.echo(f"error: {error}", err=True)
        sys.exit(1)
    failed = [name for name, row in report["exports"].items() if not row["passed"]]
    if failed and not allow_drop:
        click.echo(f"error: {', '.join(failed)}: mean per-patient Dice dropped by more than {tolerance} "
                   "(see the parity report; --allow-drop accepts it)", err=True)
        sys.exit(2)


<<<<<<< HEAD
def export(source: Path, names: list[str], out: Path | None, data: Path | None, qat_epochs: int, qat_lr: float,
           qat_steps: int | None, calibration: int, tolerance: float, force: bool) -> dict:
    from saunet.quantize.export import export_formats
    from saunet.quantize.parity import compare, markdown, write_report
    from saunet.runtime.segmenter import Segmenter
    from saunet.training.dataset import find_cases, load_cases, stack
    from saunet.training.evaluate import keras_predictor, load_keras_model, model_spec_of

    find_backend()  # the parity check runs the exports: refuse before writing any if it cannot
    model, run, spec = load_keras_model(source)
    model_spec = model_spec_of(source)
    paths = output_paths(source, run, out, names)
    existing = [p for p in paths.values() if p.exists()]
    if existing and not force:
        raise ValueError(f"{existing[0]}: exists; add --force to overwrite it")
    split_file, config_file = run / "split.json", run / "config.json"
    if not split_file.is_file() or not config_file.is_file():
        raise DataError(f"{run}: not a saunet run folder (no split.json/config.json); the export needs "
                        "its training and validation patients")
    split, config = json.loads(split_file.read_text()), json.loads(config_file.read_text())
    data = Path(data or config["data"])
    cases = {c.name: c for c in find_cases(data)}
    missing = [name for name in split["train"] + split["val"] if name not in cases]
    if missing:
        raise DataError(f"{data}: lacks case {missing[0]} of the run's split")
    needs_training = any(BY_NAME[n].needs_data for n in names)
    train = load_cases([cases[n] for n in split["train"]], spec.input_size) if needs_training else []
    if needs_training and not train:
        raise DataError(f"{data}: no training slices of the run's split")
    images, masks = stack(train) if train else (None, None)
    val = load_cases([cases[n] for n in split["val"]], None)

    float_predict = keras_predictor(model, spec)
    state = json.loads((run / "state.json").read_text()) if (run / "state.json").is_file() else {}
    # Names, not paths: the model travels to other machines, where the exporting machine's folders mean nothing.
    metadata = {"preset": model_spec.preset, "data": data.resolve().name,
                "split": {k: split[k] for k in ("seed", "fractions") if k in split},
                "validation_cases": split["val"], "float_val_dice_3d": state.get("best_score"),
                "source": source.resolve().relative_to(run.resolve().parent).as_posix()}
    flatbuffers = export_formats(model, [BY_NAME[n] for n in names], model_spec, metadata, images, masks,
                                 qat_epochs, qat_lr, qat_steps, calibration)
    for name, flatbuffer in flatbuffers.items():
        with atomic_path(paths[name]) as partial:
            partial.write_bytes(flatbuffer)
        click.echo(f"wrote {paths[name]} ({len(flatbuffer) / 1e6:.2f} MB)")

    segmenters = {name: Segmenter(paths[name]) for name in names}
    report = compare(val, float_predict, {n: s.predict_batch for n, s in segmenters.items()}, spec.threshold, tolerance)
    sizes = {name: len(b) for name, b in flatbuffers.items()}
    report["files"] = {name: path.name for name, path in paths.items()}  # beside the report; the bundle's rule reads them
    stem = paths[names[0]].with_suffix("")
    json_path, md_path = write_report(report, sizes, stem)
    click.echo(markdown(report, sizes))
    click.echo(f"parity report: {json_path}, {md_path}")
    return {**report, "paths": {name: str(path) for name, path in paths.items()}}


def check_edgetpu(model: Path) -> None:
    """Runs the Edge TPU compiler or static check on `model`; writes <stem>_edgetpu.json."""
    from saunet.quantize.edgetpu import compile_or_check, summary
    from saunet.runtime.files import write_text

    report = compile_or_check(model)
    target = model.with_name(model.stem + "_edgetpu.json")
    write_text(target, json.dumps(report, indent=2) + "\n")
    click.echo(summary(report))
    click.echo(f"Edge TPU report: {target}")
=======
>>>>>>> main
