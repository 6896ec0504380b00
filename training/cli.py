"""Command lines of the training side: `saunet-train` and `saunet-eval`."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import click

import saunet.training  # noqa: F401  (selects Keras 2 before TensorFlow loads)
from saunet.runtime.files import write_text
from saunet.runtime.preprocess import NORMALISATIONS, InputError
from saunet.training.dataset import MASK_TARGETS, DataError
from saunet.training.distribute import STRATEGIES
from saunet.training.losses import LOSSES
from saunet.training.model import PRESETS
from saunet.training.pipeline import Augmentation
from saunet.training.train import SCHEDULES

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
        raise click.BadParameter(f"{text!r}: give three train/val/test fractions, e.g. 0.85/0.10/0.05")
    return parts


@click.command(context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.option("--data", required=True, type=click.Path(path_type=Path), help="kaggle_3m folder (or any folder of <case>_<n>.tif/png pairs)")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="run folder to create (or resume)")
@click.option("--resume", is_flag=True, help="continue the run in --out after its last finished epoch")
@click.option("--preset", type=click.Choice(list(PRESETS)), default="sa-unet")
@click.option("--input-size", default=256, help="square input side (divisible by 2**levels)")
@click.option("--base-filters", type=int, default=None, help="first level's width [preset: 16]")
@click.option("--block-size", type=int, default=None, help="DropBlock block size [preset: 7]")
@click.option("--keep-prob", type=float, default=None, help="DropBlock keep probability [preset: 0.9]")
@click.option("--epochs", type=click.IntRange(min=1), default=None,
              help="epochs in all [default: 50; with --resume: the run's own]")
@click.option("--batch-size", default=32, help="global batch (split over replicas)")
@click.option("--lr", "learning_rate", default=1e-4, help="Adam learning rate (the peak, with --schedule cosine)")
@click.option("--schedule", type=click.Choice(SCHEDULES), default="constant",
              help="learning rate over the run: constant, or cosine decay to 1% of --lr at the last epoch")
@click.option("--loss", type=click.Choice(LOSSES), default="dice")
@click.option("--smooth", default=100.0, help="Dice smoothing term")
@click.option("--split", "split_text", default="0.85/0.10/0.05", help="train/val/test fractions of patients")
@click.option("--seed", default=0, help="seed of the patient split and of training")
@click.option("--rotation", default=0.25, help="augmentation: max rotation, degrees")
@click.option("--shift", default=0.05, help="augmentation: max shift, fraction of the side")
@click.option("--shear", default=0.05, help="augmentation: max shear, degrees")
@click.option("--zoom", default=0.05, help="augmentation: zoom range 1 +/- this")
@click.option("--flip/--no-flip", default=True, help="augmentation: random left-right flip")
@click.option("--grey", default=0.0, help="augmentation: probability of a grey slice (FLAIR in all three channels)")
@click.option("--no-augment", is_flag=True, help="no augmentation at all")
@click.option("--normalise", type=click.Choice(NORMALISATIONS), default="none",
              help="intensity normalisation of each slice, kept in the exported models: channel-median scales each "
                   "channel to one median brightness over the head (scans stored at different levels)")
@click.option("--tumour-share", type=click.FloatRange(0.0, 1.0, min_open=True, max_open=True), default=None,
              help="draw each training slice with tumour with this probability (the data's own share, about 1/3, "
                   "when not given); an epoch keeps its number of slices")
@click.option("--mask-targets", type=click.Choice(MASK_TARGETS), default="nearest",
              help="how masks are taken to the input size: nearest keeps them 0/1 (half a pixel off, edges on "
                   "the coarse grid); area gives each pixel its tumour share")
@click.option("--init-from", type=click.Path(path_type=Path), default=None,
              help="start from a trained model's weights (a run folder, its .keras file, or the bundled "
                   "saunet_float.keras) to fine-tune it: same preset and widths, any input size")
@click.option("--strategy", type=click.Choice(STRATEGIES), default="auto", help="tf.distribute strategy")
@click.option("--skip-bad", is_flag=True, help="skip unreadable or unpaired files (and count them) instead of stopping")
def train(data, out, resume, preset, input_size, base_filters, block_size, keep_prob, epochs, batch_size,
          learning_rate, schedule, loss, smooth, split_text, seed, rotation, shift, shear, zoom, flip, grey, no_augment,
          normalise, tumour_share, mask_targets, init_from, strategy, skip_bad) -> None:
    """Train SA-UNet on the LGG MRI slices, split by patient, into a resumable run folder."""
    from saunet.training.train import RunError, TrainConfig
    from saunet.training.train import train as run_training

    augmentation = None if no_augment else Augmentation(rotation, shift, shear, zoom, flip, grey)
    config = TrainConfig(
        data=str(data), out=str(out), preset=preset, input_size=input_size, base_filters=base_filters,
        block_size=block_size, keep_prob=keep_prob, epochs=epochs, batch_size=batch_size,
        learning_rate=learning_rate, schedule=schedule, loss=loss, smooth=smooth, split=parse_split(split_text), seed=seed,
        augmentation=augmentation, strategy=strategy, skip_bad=skip_bad, normalise=normalise,
        tumour_share=tumour_share, mask_targets=mask_targets, init_from=str(init_from) if init_from else None,
    )
    try:
        run_training(config, resume=resume)
    except KeyboardInterrupt:
        sys.exit(130)
    except (RunError, *FAILURES) as error:
        fail(str(error))


@click.command(context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.option("--data", required=True, type=click.Path(path_type=Path), help="kaggle_3m folder")
@click.option("--model", "model_path", required=True, type=click.Path(path_type=Path),
              help="a run folder (its best.keras) or a .keras file inside one")
@click.option("--split", default="test", help="which patients of the run's split.json: train, val, test or all")
@click.option("--json", "json_out", type=click.Path(path_type=Path), default=None, help="also write the scores here")
@click.option("--threshold", type=click.FloatRange(0, 1), default=None,
              help="tumour probability threshold [default: the model's, from its config]")
@click.option("--skip-bad", is_flag=True, help="skip unreadable or unpaired files instead of stopping")
def evaluate(data, model_path, split, json_out, threshold, skip_bad) -> None:
    """Score a model on a split's patients: per-patient 3D Dice and the other named metrics."""
    from saunet.training import evaluate as ev

    try:
        model, run, spec = ev.load_keras_model(model_path)
        names = None if split == "all" else ev.split_cases_of(model_path, split)
        volumes = ev.load_split(data, names, skip_bad)
        threshold = spec.threshold if threshold is None else threshold
        scores = ev.score(volumes, ev.keras_predictor(model, spec), threshold)
    except FAILURES as error:
        fail(str(error))
    scores = {"model": str(model_path), "split": split, "cases": len(volumes), **scores}
    click.echo(ev.format_table(scores, f"{model_path} on {len(volumes)} {split} case(s), threshold {threshold}"))
    if json_out:
        write_text(json_out, json.dumps(scores, indent=2) + "\n")
        click.echo(f"scores written to {json_out}")




main = click.Group("saunet", commands={"train": train, "eval": evaluate},
                   help="saunet's training side: `train` and `eval` (also installed as saunet-train, saunet-eval).")
