"""`saunet-train`: trains SA-UNet into a run folder that can be resumed and inspected.

The run folder (all files written atomically, by the chief worker only):

    config.json      every setting, the data folder, versions
    split.json       the train / val / test case lists (test is never read while training)
    state.json       the last finished epoch and the best one so far
    last.keras       model and optimiser after the last finished epoch (for --resume)
    best.keras       the model of the epoch with the best validation per-patient Dice
    history.csv      one row per epoch: training batch metrics and validation patient metrics
    tensorboard/     TensorBoard logs
    curves.png       loss and Dice per epoch
    samples.png      scan / true mask / predicted mask for validation slices (best model)
"""

from __future__ import annotations

import json
import platform
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import tensorflow as tf

from saunet.runtime import __version__
from saunet.runtime.files import atomic_path, write_text
from saunet.runtime.metrics import score_patients
from saunet.runtime.preprocess import Preprocessing, normalise_intensity
from saunet.training import distribute
from saunet.training.config import DEFAULT_EPOCHS, RECIPES, SCHEDULES, TrainConfig, recipe_config  # noqa: F401
from saunet.training.dataset import BadFiles, Volume, find_cases, fold_split, load_cases, split_cases, stack
from saunet.training.evaluate import keras_predictor, predict_volumes
from saunet.training.keras import keras
from saunet.training.losses import make_loss, training_metrics
from saunet.training.model import build_saunet, custom_objects
from saunet.training.pipeline import make_dataset
from saunet.training.plots import plot_curves, plot_samples

#: The validation figure that chooses the best checkpoint (mean per-patient 3D Dice).
SELECT_ON = "val_dice_3d"


class RunError(ValueError):
    """A run folder that cannot be started or resumed (one line)."""


def learning_rate(peak: float, schedule: str, steps: int) -> float | keras.optimizers.schedules.LearningRateSchedule:
    """`constant` (the seed's), or `cosine`: from `peak` down to 1% of it over all the run's steps.

    The schedule lives in the optimiser, which last.keras saves, so a resumed run continues it.
    """
    if schedule == "constant":
        return peak
    if schedule == "cosine":
        return keras.optimizers.schedules.CosineDecay(peak, decay_steps=steps, alpha=0.01)
    raise ValueError(f"unknown learning-rate schedule {schedule!r}; choose one of {', '.join(SCHEDULES)}")


def save_model(model: keras.Model, path: Path) -> None:
    """Saves in the native .keras format (with the optimiser's state), atomically."""
    with atomic_path(path) as partial:
        model.save(partial)


class RunFolder:
    """Reads and writes the files of a run folder; a no-op writer on non-chief workers."""

    def __init__(self, path: Path, chief: bool):
        self.path = path
        self.chief = chief
        self._scratch = None if chief else tempfile.TemporaryDirectory()

    def file(self, name: str) -> Path:
        """Where to write `name`: the run folder, or scratch space on non-chief workers."""
        return (self.path if self.chief else Path(self._scratch.name)) / name

    def write_json(self, name: str, value: dict) -> None:
        write_text(self.file(name), json.dumps(value, indent=2) + "\n")

    def read_json(self, name: str) -> dict:
        path = self.path / name
        try:
            return json.loads(path.read_text())
        except FileNotFoundError:
            raise RunError(f"{path}: missing; is {self.path} a saunet run folder?") from None
        except json.JSONDecodeError as error:
            raise RunError(f"{path}: corrupt JSON ({error})") from None


class PatientValidation(keras.callbacks.Callback):
    """After each epoch: per-patient metrics on the validation volumes, checkpoints, pictures.

    Runs before CSVLogger and TensorBoard so that they record the `val_*` figures it adds.
    """

    def __init__(
        self, run: RunFolder, volumes: list[Volume], spec: Preprocessing, state: dict, samples: int, batch_size: int
    ):
        super().__init__()
        self.run, self.volumes, self.spec, self.state = run, volumes, spec, state
        self.batch_size = batch_size
        self.sample_index = pick_samples(volumes, samples)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = logs if logs is not None else {}
        probabilities = predict_volumes(self.volumes, keras_predictor(self.model, self.spec, self.batch_size))
        scores = score_patients(probabilities, self.spec.threshold)
        logs.update(validation_logs(scores))
        save_model(self.model, self.run.file("last.keras"))
        improved = logs[SELECT_ON] > self.state.get("best_score", -1.0)
        if improved:
            save_model(self.model, self.run.file("best.keras"))
            self.state.update(best_epoch=epoch + 1, best_score=float(logs[SELECT_ON]))
            self.write_samples(probabilities)
        self.state.update(epoch=epoch + 1, last_logs={k: float(v) for k, v in logs.items()})
        self.run.write_json("state.json", self.state)
        print(
            f"epoch {epoch + 1}: validation per-patient 3D Dice mean {logs['val_dice_3d']:.4f} "
            f"(largest component {logs['val_dice_3d_lcc']:.4f}); best {self.state['best_score']:.4f} "
            f"at epoch {self.state['best_epoch']}" + (" (saved best.keras)" if improved else ""),
            flush=True,
        )

    def write_samples(self, probabilities: dict) -> None:
        if not self.sample_index:
            return
        by_case = {v.case: v for v in self.volumes}
        images = np.stack([by_case[c].images[i] for c, i in self.sample_index])
        truths = np.stack([by_case[c].masks[i] for c, i in self.sample_index])
        predicted = np.stack([probabilities[c][0][i] >= self.spec.threshold for c, i in self.sample_index])
        titles = [f"{c} #{i + 1}" for c, i in self.sample_index]
        plot_samples(
            images,
            truths,
            [predicted.astype(np.uint8)],
            titles,
            self.run.file("samples.png"),
            labels=[f"prediction (epoch {self.state['best_epoch']})"],
        )


class Curves(keras.callbacks.Callback):
    """Redraws curves.png from history.csv after CSVLogger has written the epoch."""

    def __init__(self, run: RunFolder):
        super().__init__()
        self.run = run

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if self.run.chief:
            plot_curves(self.run.file("history.csv"), self.run.file("curves.png"))


def validation_logs(scores: dict) -> dict:
    """The validation figures added to each epoch's logs (and so to history.csv)."""

    def value(x):
        return float("nan") if x is None else float(x)

    return {
        "val_dice_3d": value(scores["dice_3d"]["mean"]),
        "val_dice_3d_median": value(scores["dice_3d"]["median"]),
        "val_dice_3d_lcc": value(scores["dice_3d_lcc"]["mean"]),
        "val_slice_dice_tumour": value(scores["slice_dice_tumour"]["mean"]),
        "val_empty_slice_fp_rate": value(scores["empty_slice_fp_rate"]["rate"]),
        "val_seed_soft_dice": value(scores["seed_soft_dice"]),
    }


def pick_samples(volumes: list[Volume], count: int) -> list[tuple[str, int]]:
    """Up to `count` validation slices to draw: the largest tumour of each case, in turn."""
    picks = []
    for volume in volumes:
        areas = volume.masks.reshape(len(volume.masks), -1).sum(axis=1)
        if areas.max() > 0:
            picks.append((volume.case, int(areas.argmax())))
    return picks[:count]


def read_init_source(config: TrainConfig, spec: Preprocessing, split: dict) -> list[np.ndarray]:
    """The weights a fine-tuning run starts from (--init-from), checked before any data is loaded.

    Refused: a file that is not a saunet Keras model; one of another preset or widths (any input
    size will do: the network is fully convolutional); one that learnt from this run's validation
    or test patients, or was chosen on its test patients, whose scores it would flatter. A source
    whose split was not kept, or whose preprocessing differs, is allowed with a note.
    """
    from saunet.training.evaluate import load_keras_model, model_split

    path = Path(config.init_from)
    source, _, source_spec = load_keras_model(path)
    ours = build_saunet(config.model_spec())
    if [w.shape for w in ours.get_weights()] != [w.shape for w in source.get_weights()]:
        raise RunError(
            f"{path}: another architecture ({source.count_params():,} parameters against this run's "
            f"{ours.count_params():,}); --init-from needs the same --preset and --base-filters"
        )
    where, source_split = model_split(path)
    if source_split is None:
        print(
            f"note: {path} keeps no patient split; make sure it never saw this run's validation or test patients",
            flush=True,
        )
    else:
        trained = set(source_split.get("train", []))
        leaked = sorted(
            (trained & set(split["val"])) | ((trained | set(source_split.get("val", []))) & set(split["test"]))
        )
        if leaked:
            raise RunError(
                f"{path}: learnt from or was chosen on {len(leaked)} of this run's validation/test patients "
                f"(e.g. {leaked[0]}; its split: {where}); use its --split and --seed"
            )
    differences = [
        f"{key} {value} (this run: {spec.to_dict()[key]})"
        for key, value in source_spec.to_dict().items()
        if key != "threshold" and value != spec.to_dict()[key]
    ]
    if differences:
        print(f"note: {path} was trained with " + ", ".join(differences), flush=True)
    return source.get_weights()


def start_or_resume(config: TrainConfig, resume: bool, run: RunFolder) -> tuple[TrainConfig, dict]:
    """Checks the run folder and returns the config and state to go on with.

    A new run refuses a folder that already holds a run, and trains DEFAULT_EPOCHS unless told.
    --resume takes the saved config, keeping from the command line only --data (the run may
    have moved machine) and --epochs when given: a resumed run ends where it was meant to,
    not at the default.
    """
    if resume:
        saved = TrainConfig.from_dict(run.read_json("config.json"))
        state = run.read_json("state.json") if (run.path / "state.json").exists() else {"epoch": 0}
        if state["epoch"] and not (run.path / "last.keras").is_file():
            raise RunError(f"{run.path / 'last.keras'}: missing; the run cannot be resumed")
        if config.epochs and config.epochs > saved.epochs and saved.schedule != "constant":
            print(
                f"note: the {saved.schedule} learning rate was laid out for {saved.epochs} epochs; "
                f"the epochs after those run at its floor",
                flush=True,
            )
        saved.data, saved.epochs = config.data, config.epochs or saved.epochs
        return saved, state
    if run.chief and (run.path / "config.json").exists():
        finished = run.read_json("state.json").get("epoch", 0) if (run.path / "state.json").exists() else 0
        if finished or (run.path / "last.keras").exists():
            raise RunError(f"{run.path}: already holds a run; add --resume to continue it, or choose another --out")
        # A run that stopped before its first epoch finished has nothing to keep: start it afresh.
        print(f"note: {run.path} holds a run that finished no epoch; starting it again", flush=True)
    return replace(config, epochs=config.epochs or DEFAULT_EPOCHS), {"epoch": 0}


def train(config: TrainConfig, resume: bool = False) -> dict:
    """Trains (or resumes) a run and returns its summary."""
    strategy = distribute.make_strategy(config.strategy)
    run = RunFolder(Path(config.out), distribute.is_chief())
    config, state = start_or_resume(config, resume, run)
    keras.utils.set_random_seed(config.seed + state["epoch"])
    spec = Preprocessing(input_size=config.input_size, normalise=config.normalise)

    bad = BadFiles(config.skip_bad)
    cases = find_cases(config.data, bad)
    names = [c.name for c in cases]
    split = (
        fold_split(names, config.split, config.seed, config.folds, config.fold)
        if config.folds
        else split_cases(names, config.split, config.seed)
    )
    if resume and (run.path / "split.json").exists():
        saved_split = run.read_json("split.json")
        if {k: saved_split[k] for k in split} != split:
            raise RunError(f"{config.data}: its patients differ from those of the run's split.json")
    if not split["train"] or not split["val"]:
        raise RunError(f"{config.data}: too few patients for a training and a validation set")
    initial_weights = read_init_source(config, spec, split) if config.init_from and not state["epoch"] else None
    by_name = {c.name: c for c in cases}
    train_volumes = load_cases([by_name[n] for n in split["train"]], config.input_size, bad, config.mask_targets)
    val_volumes = load_cases([by_name[n] for n in split["val"]], None, bad)
    images, masks = stack(train_volumes)
    images = normalise_intensity(images, spec.normalise)
    print(
        f"data: {len(train_volumes)} training cases ({len(images)} slices, {int(masks.any(axis=(1, 2)).sum())} with "
        f"tumour{'; masks as tumour shares (area)' if masks.dtype != np.uint8 else ''}), {len(val_volumes)} validation cases "
        f"({sum(len(v.images) for v in val_volumes)} slices), {len(split['test'])} test cases kept aside"
        + (f"; skipped {len(bad.problems)} bad file(s)" if bad.problems else ""),
        flush=True,
    )

    run.path.mkdir(parents=True, exist_ok=True)
    if not resume:
        run.write_json(
            "config.json",
            {
                **config.to_dict(),
                "preprocessing": spec.to_dict(),
                "model": config.model_spec().to_dict(),
                "versions": versions(),
            },
        )
        folds = {"folds": config.folds, "fold": config.fold} if config.folds else {}
        run.write_json("split.json", {**split, "seed": config.seed, "fractions": list(config.split), **folds})

    with strategy.scope():
        if state["epoch"]:
            model = keras.models.load_model(run.path / "last.keras", custom_objects=custom_objects())
        else:
            model = build_saunet(config.model_spec())
            if initial_weights is not None:
                model.set_weights(initial_weights)
                print(f"starting from the weights of {config.init_from}", flush=True)
            steps = -(-len(images) // config.batch_size) * config.epochs
            model.compile(
                optimizer=keras.optimizers.Adam(learning_rate(config.learning_rate, config.schedule, steps)),
                loss=make_loss(config.loss, config.smooth),
                metrics=training_metrics(),
            )

    dataset = make_dataset(
        images,
        masks,
        config.batch_size,
        spec,
        config.augmentation,
        shuffle=True,
        seed=config.seed + state["epoch"],
        tumour_share=config.tumour_share,
    )
    callbacks = [
        PatientValidation(run, val_volumes, spec, state, config.samples, config.batch_size),
        keras.callbacks.CSVLogger(str(run.file("history.csv")), append=bool(state["epoch"])),
        Curves(run),
        keras.callbacks.TensorBoard(str(run.file("tensorboard")), write_graph=False, profile_batch=0),
    ]
    started = time.time()
    print(
        f"training {config.preset} ({model.count_params():,} parameters) on {distribute.describe(strategy)}, "
        f"epochs {state['epoch'] + 1} to {config.epochs}",
        flush=True,
    )
    try:
        model.fit(
            dataset,
            epochs=config.epochs,
            initial_epoch=state["epoch"],
            callbacks=callbacks,
            verbose=1 if sys.stdout.isatty() else 2,
        )
    except KeyboardInterrupt:
        print(
            f"\ninterrupted; {state['epoch']} epoch(s) finished. Continue with: "
            f"saunet-train --data {config.data} --out {config.out} --resume",
            file=sys.stderr,
        )
        raise
    summary = {
        "run": str(run.path),
        "epochs": state["epoch"],
        "best_epoch": state.get("best_epoch"),
        "best_val_dice_3d": state.get("best_score"),
        "minutes": round((time.time() - started) / 60, 1),
        "strategy": distribute.describe(strategy),
    }
    print(
        f"done: {summary['epochs']} epochs in {summary['minutes']} min; best validation per-patient 3D Dice "
        f"{summary['best_val_dice_3d']:.4f} at epoch {summary['best_epoch']} -> {run.path / 'best.keras'}"
    )
    return summary


def versions() -> dict:
    """The toolkit, library and machine versions a run was made with."""
    import tf_keras

    return {
        "saunet": __version__,
        "tensorflow": tf.__version__,
        "tf_keras": tf_keras.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
    }
