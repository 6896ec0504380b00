"""Command lines of the training side: `saunet-train` and `saunet-eval`."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import click

import saunet.training  # noqa: F401  (selects Keras 2 before TensorFlow loads)
from saunet.runtime.files import write_text
from saunet.runtime.options import FiniteFloatRange
from saunet.runtime.preprocess import NORMALISATIONS, InputError
from saunet.runtime.spec import PRESETS
from saunet.training.config import LOSSES, RECIPES, SCHEDULES, STRATEGIES, Augmentation, TrainConfig
from saunet.training.dataset import MASK_TARGETS, DataError
from saunet.training.evaluate import CHECKPOINTS
from saunet.training.quiet import load_tensorflow

FAILURES = (DataError, InputError, ValueError, OSError)


def fail(message: str) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(1)


def parse_split(text: str) -> tuple[float, float, float]:
    try:
        parts = tuple(float(x) for x in text.split("/"))
    except ValueError:
        parts = ()
    if len(parts) != 3:
        raise click.BadParameter(
            f"{text!r}: give three train/val/test fractions, e.g. 0.85/0.10/0.05", param_hint="--split"
        )
    if (
        not all(math.isfinite(p) and 0 <= p <= 1 for p in parts)
        or not math.isclose(sum(parts), 1.0, abs_tol=1e-6)
        or parts[0] <= 0
        or parts[1] <= 0
    ):
        raise click.BadParameter(
            f"{text!r}: three fractions from 0 to 1 summing to 1, with some training and "
            "validation patients, e.g. 0.8/0.1/0.1",
            param_hint="--split",
        )
    return parts


@click.command(context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.option(
    "--data",
    required=True,
    type=click.Path(path_type=Path),
    help="kaggle_3m folder (or any folder of <case>_<n>.tif/png pairs)",
)
@click.option("--out", required=True, type=click.Path(path_type=Path), help="run folder to create (or resume)")
@click.option("--resume", is_flag=True, help="continue the run in --out after its last finished epoch")
@click.option(
    "--recipe",
    type=click.Choice(list(RECIPES)),
    default="saunet",
    help="the settings every option below defaults to: saunet (the bundled models' with --contrast 0.5, "
    "best out of fold) or seed-notebook (the notebook the project grew from: 256x256, Dice loss, lr 1e-4, "
    "DropBlock on, 85/10/5 split)",
)
@click.option(
    "--folds",
    type=click.IntRange(min=2),
    default=None,
    help="cross-validation: deal the non-test patients into this many folds (the test patients stay those "
    "of --split and --seed)",
)
@click.option(
    "--fold", type=click.IntRange(min=0), default=None, help="cross-validation: the fold to validate on (0-based)"
)
@click.option("--preset", type=click.Choice(list(PRESETS)), default=None, help="architecture [recipe: seed]")
@click.option(
    "--input-size",
    type=click.IntRange(min=16),
    default=None,
    help="square input side, divisible by 2**levels [recipe: 128]",
)
@click.option("--base-filters", type=click.IntRange(min=1), default=None, help="first level's width [preset: 16]")
@click.option("--block-size", type=click.IntRange(min=1), default=None, help="DropBlock block size [preset: 7]")
@click.option(
    "--keep-prob",
    type=FiniteFloatRange(0.0, 1.0, min_open=True),
    default=None,
    help="DropBlock keep probability, 1 for off [recipe: 1.0]",
)
@click.option(
    "--epochs",
    type=click.IntRange(min=1),
    default=None,
    help="epochs in all [default: 50; with --resume: the run's own]",
)
@click.option(
    "--batch-size", type=click.IntRange(min=1), default=None, help="global batch, split over replicas [recipe: 16]"
)
@click.option(
    "--lr",
    "learning_rate",
    type=FiniteFloatRange(0.0, 1.0),
    default=None,
    help="Adam learning rate, the peak with --schedule cosine [recipe: 1e-3]",
)
@click.option(
    "--schedule",
    type=click.Choice(SCHEDULES),
    default=None,
    help="learning rate over the run: constant, or cosine decay to 1% of --lr at the last epoch [recipe: cosine]",
)
@click.option("--loss", type=click.Choice(LOSSES), default=None, help="[recipe: bce-dice]")
@click.option("--smooth", type=FiniteFloatRange(0.0, 1e6), default=100.0, help="Dice smoothing term")
@click.option("--split", "split_text", default=None, help="train/val/test fractions of patients [recipe: 0.8/0.1/0.1]")
@click.option("--seed", type=click.IntRange(0, 2**31 - 1), default=0, help="seed of the patient split and of training")
@click.option("--rotation", type=FiniteFloatRange(0.0, 180.0), default=0.25, help="augmentation: max rotation, degrees")
@click.option(
    "--shift", type=FiniteFloatRange(0.0, 0.5), default=0.05, help="augmentation: max shift, fraction of the side"
)
@click.option("--shear", type=FiniteFloatRange(0.0, 45.0), default=0.05, help="augmentation: max shear, degrees")
@click.option("--zoom", type=FiniteFloatRange(0.0, 0.9), default=0.05, help="augmentation: zoom range 1 +/- this")
@click.option("--flip/--no-flip", default=True, help="augmentation: random left-right flip")
@click.option(
    "--grey",
    type=FiniteFloatRange(0.0, 1.0),
    default=None,
    help="augmentation: probability of a grey slice, FLAIR in all three channels [recipe: 0.1]",
)
@click.option(
    "--contrast",
    type=FiniteFloatRange(0.0, 4.0),
    default=None,
    help="augmentation: each channel's contrast about its head mean raised to a random power in "
    "[1/(1+C), 1+C], 0 for off [recipe: 0.5]",
)
@click.option("--no-augment", is_flag=True, help="no augmentation at all")
@click.option(
    "--normalise",
    type=click.Choice(NORMALISATIONS),
    default=None,
    help="intensity normalisation of each slice, kept in the exported models: channel-median scales each "
    "channel to one median brightness over the head (scans stored at different levels) "
    "[recipe: channel-median]",
)
@click.option(
    "--tumour-share",
    type=FiniteFloatRange(0.0, 1.0, min_open=True, max_open=True),
    default=None,
    help="draw each training slice with tumour with this probability (the data's own share, about 1/3, "
    "when not given); an epoch keeps its number of slices",
)
@click.option(
    "--mask-targets",
    type=click.Choice(MASK_TARGETS),
    default="nearest",
    help="how masks are taken to the input size: nearest keeps them 0/1 (half a pixel off, edges on "
    "the coarse grid); area gives each pixel its tumour share",
)
@click.option(
    "--init-from",
    type=click.Path(path_type=Path),
    default=None,
    help="start from a trained model's weights (a run folder, its .keras file, or the bundled "
    "saunet_float.keras) to fine-tune it: same preset and widths, any input size",
)
@click.option("--strategy", type=click.Choice(STRATEGIES), default="auto", help="tf.distribute strategy")
@click.option("--skip-bad", is_flag=True, help="skip unreadable or unpaired files (and count them) instead of stopping")
@click.option("--verbose", is_flag=True, help="show TensorFlow's own start-up and device messages")
def train(
    data,
    out,
    resume,
    recipe,
    folds,
    fold,
    preset,
    input_size,
    base_filters,
    block_size,
    keep_prob,
    epochs,
    batch_size,
    learning_rate,
    schedule,
    loss,
    smooth,
    split_text,
    seed,
    rotation,
    shift,
    shear,
    zoom,
    flip,
    grey,
    contrast,
    no_augment,
    normalise,
    tumour_share,
    mask_targets,
    init_from,
    strategy,
    skip_bad,
    verbose,
) -> None:
    """Train SA-UNet on the LGG MRI slices, split by patient, into a resumable run folder.

    With no options it trains the recipe that scores best out of fold (the bundled models' with
    --contrast 0.5); --folds K --fold I trains one fold of a patient-level cross-validation (one
    run folder a fold; score them together with saunet-eval --model RUN_0 --model RUN_1 ...).
    """
    if (folds is None) != (fold is None):
        raise click.UsageError("--folds and --fold go together")
    if folds is not None and fold >= folds:
        raise click.BadParameter(f"{fold} is not below --folds {folds}", param_hint="--fold")
    load_tensorflow(verbose)
    from saunet.training.config import recipe_config
    from saunet.training.train import RunError
    from saunet.training.train import train as run_training

    given = {
        "preset": preset,
        "input_size": input_size,
        "keep_prob": keep_prob,
        "batch_size": batch_size,
        "learning_rate": learning_rate,
        "schedule": schedule,
        "loss": loss,
        "normalise": normalise,
        "split": parse_split(split_text) if split_text else None,
    }
    config = recipe_config(
        recipe,
        given,
        data=str(data),
        out=str(out),
        base_filters=base_filters,
        block_size=block_size,
        epochs=epochs,
        smooth=smooth,
        seed=seed,
        strategy=strategy,
        skip_bad=skip_bad,
        tumour_share=tumour_share,
        mask_targets=mask_targets,
        init_from=str(init_from) if init_from else None,
        folds=folds,
        fold=fold,
    )
    pools = 2 ** len(PRESETS[config.preset].filters)
    if config.input_size % pools:
        raise click.BadParameter(
            f"{config.input_size} is not divisible by {pools} (the {config.preset} preset's poolings)",
            param_hint="--input-size",
        )
    if no_augment:
        config.augmentation = None
    else:
        config.augmentation = Augmentation(
            rotation,
            shift,
            shear,
            zoom,
            flip,
            config.augmentation.grey if grey is None else grey,
            config.augmentation.contrast if contrast is None else contrast,
        )
    assert isinstance(config, TrainConfig)
    try:
        run_training(config, resume=resume)
    except KeyboardInterrupt:
        sys.exit(130)
    except (RunError, *FAILURES) as error:
        fail(str(error))


def training_command(config: dict, out: str | None = None) -> str:
    """The saunet-train command that makes this config: --data, --out (`out`, else runs/<the run's
    folder name>) and every non-default option. Settings the config predates take the values
    they had then (TrainConfig.from_dict), so an old run's command makes that run again."""
    config = TrainConfig.from_dict(config).to_dict()
    augmentation = config["augmentation"]
    values = {
        **config,
        **(augmentation or {}),
        "no_augment": augmentation is None,
        "split_text": "/".join(f"{x:g}" for x in config["split"]),
    }
    parts = ["saunet-train --data data/kaggle_3m", f"--out {out or 'runs/' + Path(config['out']).name}"]
    for param in train.params:
        if param.name in ("data", "out", "resume") or param.name not in values:
            continue
        value = values[param.name]
        if param.is_flag:
            if bool(value) != (param.default is True):  # an unset flag (click: a sentinel) is off
                parts.append(param.opts[0] if value or not param.secondary_opts else param.secondary_opts[0])
        elif value != param.default or param.name == "seed":  # the seed is written down even at its default
            parts.append(f"{param.opts[0]} {value:g}" if isinstance(value, float) else f"{param.opts[0]} {value}")
    return " \\\n        ".join(" ".join(parts[i : i + 5]) for i in range(0, len(parts), 5))


@click.command(context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.option("--data", required=True, type=click.Path(path_type=Path), help="kaggle_3m folder")
@click.option(
    "--model",
    "models",
    required=True,
    multiple=True,
    type=click.Path(path_type=Path),
    help="a run folder or a .keras file; repeat it for the folds of a cross-validation (out-of-fold "
    "scores with --split val) or for an ensemble (probabilities averaged)",
)
@click.option("--split", default="test", help="which patients of the run's split.json: train, val, test or all")
@click.option(
    "--checkpoint",
    type=click.Choice(CHECKPOINTS),
    default=None,
    help="which model of a run folder [default: best; last for cross-validation folds, whose best "
    "epoch was picked on the patients they are scored on]",
)
@click.option("--tta", is_flag=True, help="also predict the left-right mirrored scans and average")
@click.option("--json", "json_out", type=click.Path(path_type=Path), default=None, help="also write the scores here")
@click.option(
    "--against",
    type=click.Path(path_type=Path),
    default=None,
    help="another saunet-eval --json report: the per-patient difference, paired over the shared "
    "patients, with its 95% bootstrap interval (e.g. a training change's cross-validation against the baseline's)",
)
@click.option(
    "--threshold",
    type=FiniteFloatRange(0, 1),
    default=None,
    help="tumour probability threshold [default: the model's, from its config]",
)
@click.option("--skip-bad", is_flag=True, help="skip unreadable or unpaired files instead of stopping")
@click.option("--verbose", is_flag=True, help="show TensorFlow's own start-up and device messages")
def evaluate(data, models, split, checkpoint, tta, json_out, against, threshold, skip_bad, verbose) -> None:
    """Score a model, an ensemble or a cross-validation on patients: per-patient 3D Dice and the other metrics.

    Several fold runs with --split val give the out-of-fold table: each patient scored by the fold
    model that did not train on it.
    """
    if threshold is not None and threshold != threshold:
        raise click.BadParameter("not a number", param_hint="--threshold")
    load_tensorflow(verbose)
    from saunet.training import evaluate as ev

    models = list(models)
    try:
        other = ev.read_scores(against) if against else None
        folds = len(models) > 1 and split == "val" and all(ev.is_fold_run(m) for m in models)
        checkpoint = checkpoint or ("last" if all(ev.is_fold_run(m) for m in models) else "best")
        if folds:
            scores = ev.out_of_fold(data, models, checkpoint, tta, skip_bad)
            what = f"out-of-fold over {len(models)} folds"
        else:
            predict, spec = ev.ensemble_predictor(models, checkpoint, tta)
            names = None if split == "all" else ev.shared_split(models, split)
            volumes = ev.load_split(data, names, skip_bad)
            scores = ev.score(volumes, predict, spec.threshold if threshold is None else threshold)
            what = f"{len(models)}-model ensemble" if len(models) > 1 else str(models[0])
        paired = ev.paired_against(scores, other) if other else None
    except FAILURES as error:
        fail(str(error))
    cases = len(scores["per_patient"])
    scores = {
        "models": [str(m) for m in models],
        "checkpoint": checkpoint,
        "tta": tta,
        "split": split,
        "cases": cases,
        **scores,
    }
    title = (
        f"{what} ({checkpoint}.keras{', mirrored too' if tta else ''}) on {cases} {split} case(s), "
        f"threshold {scores['threshold']}"
    )
    click.echo(ev.format_table(scores, title))
    if paired:
        scores["against"] = {"report": str(against), **paired}
        click.echo(ev.format_against(paired, str(against)))
    if json_out:
        write_text(json_out, json.dumps(scores, indent=2) + "\n")
        click.echo(f"scores written to {json_out}")


main = click.Group(
    "saunet",
    commands={"train": train, "eval": evaluate},
    help="saunet's training side: `train` and `eval` (also installed as saunet-train, saunet-eval).",
)
