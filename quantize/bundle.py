"""Puts a run's chosen models into the package: the default model of saunet-run and its float original.

    python -m saunet.quantize.bundle runs/RUN                     # the int8 export the rule picks
    python -m saunet.quantize.bundle runs/RUN runs/RUN/export/saunet_int8_ptq.tflite

Without a file, the int8 export is picked from saunet-export's parity reports in RUN/export by
the rule in `saunet.quantize.choice` (best mask agreement with the float model on the
validation patients, within the tolerance). Writes runtime/models/saunet_int8.tflite (the
int8 export, byte for byte), saunet_float.keras (the run's best.keras without its optimiser
state, which only a resumed training needs and which triples the file) and saunet_float.json
(its preprocessing, which a run keeps in config.json, and its patient split, so that
`saunet-eval` can score the bundled model on its test patients and `saunet-train --init-from`
can refuse to fine-tune it on them). All three are written before any is renamed into place,
so a failure leaves the bundle as it was. The int8 file must be an integer export of the same
preset and preprocessing as the run, so the pair cannot come from two different models.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import click

import saunet.quantize  # noqa: F401  (Keras 2 before TensorFlow)
from saunet.quantize.choice import pick_int8, read_reports
from saunet.quantize.formats import BY_NAME
from saunet.runtime.files import atomic_path
from saunet.runtime.metadata import ModelError, read_metadata
from saunet.runtime.models import BUNDLED_MODEL
from saunet.runtime.preprocess import Preprocessing

FLOAT_NAME = "saunet_float.keras"
FLOAT_SPEC_NAME = "saunet_float.json"


def bundle(run: Path, int8: Path, dest: Path) -> dict[str, Path]:
    """Checks that `int8` was made from `run`'s model, then writes both into `dest`."""
    from saunet.runtime.spec import ModelSpec
    from saunet.training.evaluate import load_keras_model, model_spec_of, model_split

    metadata = read_metadata(int8)
    fmt = metadata.get("format")
    if fmt not in BY_NAME or not BY_NAME[fmt].integer_io:
        raise ModelError(int8, f"is a {fmt or 'non-saunet'} model; bundle an int8 export (--int8 or --ptq)")
    model, _, spec = load_keras_model(run)
    ours = model_spec_of(run)
    if "model" not in metadata:
        raise ModelError(int8, "carries no model description (exported by an older saunet); export it again")
    theirs = ModelSpec.from_dict(metadata["model"])
    if (theirs.preset, theirs.filters, theirs.input_size) != (ours.preset, ours.filters, ours.input_size):
        raise ModelError(
            int8,
            f"was exported from a {theirs.preset} model of widths {list(theirs.filters)} at "
            f"{theirs.input_size}px, but {run} holds a {ours.preset} model of widths "
            f"{list(ours.filters)} at {ours.input_size}px",
        )
    exported, trained = Preprocessing.from_dict(metadata.get("preprocessing", {})).to_dict(), spec.to_dict()
    differences = [f"{key} {exported[key]} ({run}: {trained[key]})" for key in trained if exported[key] != trained[key]]
    if differences:
        raise ModelError(int8, "preprocesses scans differently from the run: " + ", ".join(differences))
    targets = {
        "int8": dest / BUNDLED_MODEL.name,
        "float": dest / FLOAT_NAME,
        "float preprocessing": dest / FLOAT_SPEC_NAME,
    }
    # All three are written before any is renamed into place: a failure changes none of them.
    with (
        atomic_path(targets["int8"]) as int8_partial,
        atomic_path(targets["float"]) as float_partial,
        atomic_path(targets["float preprocessing"]) as spec_partial,
    ):
        model.save(float_partial)  # loaded uncompiled: no optimiser state to save
        _, split = model_split(run)
        spec_partial.write_text(
            json.dumps({"preprocessing": spec.to_dict(), "model": ours.to_dict(), "split": split}, indent=2) + "\n"
        )
        shutil.copyfile(int8, int8_partial)
    return targets


def chosen_int8(run: Path) -> Path:
    """The int8 export of `run` that the rule picks (see saunet.quantize.choice)."""
    folder = run / "export"
    choice = pick_int8(read_reports(folder))
    if choice is None:
        raise ValueError(
            f"{folder}: no int8 export within its parity tolerance (saunet-export --int8 --ptq "
            "writes them and *_parity.json); name the INT8 file to bundle one anyway"
        )
    if choice.path is None:
        raise ValueError(
            f"{folder}: its parity report predates recorded file names; name the INT8 file "
            f"({choice.format} is the rule's pick)"
        )
    click.echo(f"chosen: {choice.path} ({choice.reason()})")
    return choice.path


@click.command(context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.argument("run", type=click.Path(path_type=Path))
@click.argument("int8", type=click.Path(path_type=Path), required=False)
@click.option(
    "--dest", type=click.Path(path_type=Path), default=BUNDLED_MODEL.parent, help="where the bundled models live"
)
def main(run: Path, int8: Path | None, dest: Path) -> None:
    """Bundle RUN's best model (float) and INT8, an int8 export of it, as saunet-run's default.

    Without INT8, the int8 export in RUN/export whose masks agree best with the float model's on
    the validation patients, among those within the parity tolerance."""
    try:
        written = bundle(run, int8 or chosen_int8(run), dest)
    except (ModelError, ValueError, OSError) as error:
        click.echo(f"error: {error}", err=True)
        sys.exit(1)
    for name, path in written.items():
        click.echo(f"{name}: {path} ({path.stat().st_size / 1e6:.2f} MB)")
    click.echo(
        f"now write {dest / 'MODEL_CARD.md'} (python -m saunet.benchmarks.model_card) and the figure "
        "(python -m saunet.benchmarks.model_figure)"
    )


if __name__ == "__main__":
    main()
