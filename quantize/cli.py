"""`saunet-export RUN_OR_MODEL --int8`: TFLite models with their metadata and a parity report."""

from __future__ import annotations

import sys
from pathlib import Path

import click

import saunet.quantize  # noqa: F401  (Keras 2 before TensorFlow)
from saunet.quantize.formats import BY_NAME, LITERT, table
from saunet.quantize.pipeline import check_edgetpu, export
from saunet.runtime.interpreter import NoInterpreterError
from saunet.runtime.metadata import ModelError
from saunet.runtime.options import FiniteFloatRange
from saunet.runtime.preprocess import InputError
from saunet.training.dataset import DataError
from saunet.training.quiet import load_tensorflow

FAILURES = (DataError, InputError, ModelError, NoInterpreterError, ValueError, OSError)


def format_flags(command):
    """One flag a format of the table (quantize/formats.py), so flags, files and rows cannot drift apart."""
    for fmt in reversed(LITERT):
        command = click.option(
            fmt.flag, "formats", flag_value=fmt.name, multiple=True, help=f"{fmt.name}: {fmt.quantization}"
        )(command)
    return command


@click.command(
    context_settings={"help_option_names": ["-h", "--help"], "show_default": True}, epilog="\b\nFormats:\n" + table()
)
@click.argument("source", type=click.Path(path_type=Path))
@format_flags
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=None,
    help="output file (one format) or name stem [default: RUN/export/saunet_<format>.tflite]",
)
@click.option("--data", type=click.Path(path_type=Path), default=None, help="data folder [default: the run's]")
@click.option("--qat-epochs", type=click.IntRange(min=1), default=1, help="quantization-aware fine-tuning epochs")
@click.option(
    "--qat-lr",
    type=FiniteFloatRange(0.0, 1.0, min_open=True),
    default=1e-6,
    help="quantization-aware fine-tuning learning rate",
)
@click.option(
    "--qat-steps", type=click.IntRange(min=1), default=100, help="steps (batches of 16 training slices) per QAT epoch"
)
@click.option(
    "--calibration", type=click.IntRange(min=1), default=200, help="training slices used to calibrate int8 ranges"
)
@click.option(
    "--tolerance", type=FiniteFloatRange(0.0, 1.0), default=0.01, help="largest allowed drop of mean per-patient Dice"
)
@click.option("--allow-drop", is_flag=True, help="exit 0 even when an export drops more than --tolerance")
@click.option("--force", is_flag=True, help="overwrite existing output files")
@click.option("--edgetpu", is_flag=True, help="check the int8 model for the Coral Edge TPU (compiler if installed)")
@click.option("--verbose", is_flag=True, help="show TensorFlow's own start-up and device messages")
def main(
    source,
    formats,
    out,
    data,
    qat_epochs,
    qat_lr,
    qat_steps,
    calibration,
    tolerance,
    allow_drop,
    force,
    edgetpu,
    verbose,
):
    """Export a trained run (or a .keras file in one) to TFLite, then check parity on validation patients."""
    load_tensorflow(verbose)
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
        click.echo(
            f"error: {', '.join(failed)}: mean per-patient Dice dropped by more than {tolerance} "
            "(see the parity report; --allow-drop accepts it)",
            err=True,
        )
        sys.exit(2)
