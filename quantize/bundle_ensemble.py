"""Puts a cross-validation's fold models into the package as saunet-run's default ensemble.

    python -m saunet.quantize.bundle_ensemble runs/CV/fold0 runs/CV/fold1 ... [--tta] [--threshold T]

Each fold's int8 export is picked from its parity reports (saunet-export on the fold's final
model, scored on the fold's own validation patients) by the single model's rule
(saunet.quantize.choice), so every member has passed the parity gate. Writes
runtime/models/ensemble/fold<I>_int8.tflite, byte for byte, and ensemble.json: the members
(fold, run, epochs, format, why chosen), fold 0's training command, the cross-validation's test patients, on which no member
trained, whether the mirrored scan is averaged too (`--tta`) and the threshold of the averaged
probabilities if the cross-validation decided one other than the members' own. The new folder is written
beside the old one and swapped in by renames, so a failure leaves the bundle as it was.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import click

from saunet.quantize.choice import pick_int8, read_reports
from saunet.runtime.ensemble import ENSEMBLE_FILE, BundledEnsemble
from saunet.runtime.metadata import ModelError, read_metadata
from saunet.runtime.models import BUNDLED_ENSEMBLE
from saunet.runtime.options import FiniteFloatRange


def members(runs: list[Path]) -> tuple[list[dict], list[str], str]:
    """Each fold run's chosen int8 export and why, in fold order, the test patients and fold 0's
    training command; the folds checked to be one cross-validation."""
    from saunet.training.cli import training_command
    from saunet.training.dataset import DataError
    from saunet.training.evaluate import fold_splits, read_json

    splits = fold_splits(runs)
    if sorted(s["fold"] for s in splits) != list(range(splits[0]["folds"])):
        given = sorted(s["fold"] for s in splits)
        raise ValueError(
            f"an ensemble takes every fold of the cross-validation (0..{splits[0]['folds'] - 1}), not {given}"
        )
    chosen, commands = [], []
    for run, split in sorted(zip(runs, splits), key=lambda pair: pair[1]["fold"]):
        if not (run / "config.json").is_file():
            raise DataError(f"{run / 'config.json'}: missing (not a saunet-train run folder)")
        config = read_json(run / "config.json")
        commands.append(training_command(config, out=f"runs/{run.parent.name}/{run.name}"))
        choice = pick_int8(read_reports(run / "export"))
        if choice is None or choice.path is None:
            raise ValueError(
                f"{run / 'export'}: no int8 export within its parity tolerance "
                f"(saunet-export {run / 'last.keras'} --ptq --int8 writes them)"
            )
        chosen.append(
            {
                "file": f"fold{split['fold']}_int8.tflite",
                "fold": split["fold"],
                "run": f"{run.parent.name}/{run.name}",
                "epochs": config["epochs"],
                "source": choice.path,
                "format": choice.format,
                "chosen": choice.reason(),
                "validation_patients": len(split["val"]),
            }
        )
    descriptions = {json.dumps(read_metadata(m["source"]).get("model"), sort_keys=True) for m in chosen}
    if len(descriptions) != 1:
        raise ModelError(
            chosen[0]["source"], "the folds' exports describe different models; an ensemble averages one kind"
        )
    return chosen, splits[0]["test"], commands[0]


def bundle_ensemble(runs: list[Path], tta: bool, dest: Path, threshold: float | None = None) -> Path:
    """Writes the ensemble folder `dest` (see the module's docstring) and returns its description file."""
    chosen, test_patients, training = members(runs)
    partial, old = dest.with_name(dest.name + ".partial"), dest.with_name(dest.name + ".old")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    for member in chosen:
        shutil.copyfile(member["source"], partial / member["file"])
        member["source"] = str(member["source"])
    description = {
        "models": [m["file"] for m in chosen],
        "tta": tta,
        **({"threshold": threshold} if threshold is not None else {}),
        "members": chosen,
        "training": training,
        "test_patients": test_patients,
    }
    (partial / ENSEMBLE_FILE).write_text(json.dumps(description, indent=2) + "\n")
    BundledEnsemble.read(partial / ENSEMBLE_FILE)
    shutil.rmtree(old, ignore_errors=True)
    if dest.exists():
        dest.rename(old)
    partial.rename(dest)
    shutil.rmtree(old, ignore_errors=True)
    return dest / ENSEMBLE_FILE


@click.command(context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.argument("runs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--tta/--no-tta", default=False, help="saunet-run also averages the mirrored scan by default")
@click.option(
    "--threshold",
    type=FiniteFloatRange(0, 1, min_open=True, max_open=True),
    default=None,
    help="saunet-run's threshold for the averaged probabilities [default: the members' own]",
)
@click.option(
    "--dest", type=click.Path(path_type=Path), default=BUNDLED_ENSEMBLE.parent, help="the bundled ensemble's folder"
)
def main(runs: tuple[Path, ...], tta: bool, threshold: float | None, dest: Path) -> None:
    """Bundle every fold run of one cross-validation (RUNS) as saunet-run's default ensemble."""
    import saunet.quantize  # noqa: F401  (Keras 2 before TensorFlow)
    from saunet.training.dataset import DataError

    try:
        written = bundle_ensemble(list(runs), tta, dest, threshold)
    except (DataError, ModelError, ValueError, OSError) as error:
        click.echo(f"error: {error}", err=True)
        sys.exit(1)
    for member in json.loads(written.read_text())["members"]:
        click.echo(f"fold {member['fold']}: {member['source']} -> {dest / member['file']} ({member['chosen']})")
    click.echo(f"ensemble: {written}")


if __name__ == "__main__":
    main()
