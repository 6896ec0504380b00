"""Writes the bundled model's card from the records behind it, so that no figure in it is typed by hand.

    python -m saunet.benchmarks.model_card --record checkpoints/RUN \
        --bench benchmarks/reports/<date>-<machine>-RUN.json --notes NOTES.md

Where each part comes from:
- the bundled files (`--models`): sizes, parameter count, which int8 export it is;
- the run's record (`--record`): config.json (the training command, rebuilt from it),
  split.json, state.json, history.csv, val-scores.json (`saunet-eval --split val --json`) and
  export/*_parity.{json,md} (`saunet-export`'s parity on the validation patients, the report
  that covers the bundled int8 format);
- the saunet-bench report on the test patients (`--bench`): the result tables and the goal;
- NOTES.md: what only a person can write (why this run, where the model falls short, what
  to try next), placed under the goal. Check its figures against the tables.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import click
import numpy as np

from saunet.benchmarks.card_tables import tables
from saunet.benchmarks.cv_decisions import threshold_variant
from saunet.benchmarks.report import ENSEMBLE_ROW, REFERENCE_ROW
from saunet.quantize.choice import pick_int8
from saunet.quantize.formats import FORMATS
from saunet.runtime.ensemble import ENSEMBLE_FILE
from saunet.runtime.files import write_text
from saunet.runtime.metadata import ModelError, read_metadata
from saunet.runtime.metrics import bootstrap_interval, format_difference, paired_difference, summary_rows
from saunet.runtime.preprocess import Preprocessing
from saunet.training.cli import training_command

MODELS = Path(__file__).resolve().parents[1] / "runtime" / "models"
INT8_FORMATS = tuple(f.name for f in FORMATS if f.integer_io)
LABELS = {"int8": "int8 QAT", "int8-ptq": "int8 PTQ"}
#: The issue's goal: mean per-patient 3D Dice, largest component kept, int8 model, test patients.
GOAL = 0.85
#: The ensemble's goals: saunet-run's default on the test patients (mean per-patient 3D Dice as it
#: post-processes), the folds' out-of-fold mean (largest component), a whole 256x256 slice at 1 thread.
DEFAULT_GOAL = 0.87
OOF_GOAL = 0.86
SLICE_MS_GOAL = 60.0
RECORD_FILES = ("config.json", "split.json", "state.json", "history.csv", "val-scores.json")
PRESET_TEXT = {
    "seed": "the architecture of suniash/brain_mri_segmentation (the notebook this project grew from), "
    "spatial attention on the last pooled map, transposed-convolution decoder",
    "sa-unet": "Guo et al. 2020's layout: Conv-attention-Conv bottleneck, transposed-convolution decoder",
}


def goal_reading(low: float, high: float, goal: float = GOAL) -> str:
    """What a 95% interval of a mean says about a goal."""
    if high < goal:
        return "the whole interval lies below the goal"
    if low > goal:
        return "the whole interval lies above the goal"
    return "the goal lies inside it, so these patients neither establish nor rule out the goal"


def ensemble_goals(default: dict, single: dict, oof_plain: dict, slice_ms: float | None) -> str:
    """The ensemble's goals read off its figures, and its paired difference from the single model.

    `default` and `single` are bench rows' scores (per-patient, at saunet-run's default
    post-processing); `oof_plain` the out-of-fold summary with the largest component kept.
    """
    filled = [p["dice_3d_filled"] for p in default["per_patient"]]
    mean, (low, high) = float(np.mean(filled)), bootstrap_interval(filled)
    oof_low, oof_high = oof_plain["interval"]
    theirs = {p["patient"]: p["dice_3d_lcc"] for p in single["per_patient"]}
    ours = [p for p in default["per_patient"] if p["patient"] in theirs]
    against = paired_difference([p["dice_3d_lcc"] for p in ours], [theirs[p["patient"]] for p in ours])
    latency = "not measured" if slice_ms is None else f"{slice_ms:.1f} ms"
    met = {True: "met", False: "missed"}
    return f"""Goals of the default configuration:

- saunet-run's default on the {len(filled)} test patients, at least {DEFAULT_GOAL}: **{met[mean >= DEFAULT_GOAL]}, {mean:.3f}**
  (95% interval {low:.3f} to {high:.3f}; {goal_reading(low, high, DEFAULT_GOAL)}).
- Out of fold, largest component kept, at least {OOF_GOAL}: **{met[oof_plain["mean"] >= OOF_GOAL]}, {oof_plain["mean"]:.3f}**
  ({oof_low:.3f} to {oof_high:.3f}; {goal_reading(oof_low, oof_high, OOF_GOAL)}).
- A whole 256x256 slice at 1 thread, at most {SLICE_MS_GOAL:g} ms: **{met[slice_ms is not None and slice_ms <= SLICE_MS_GOAL]}, {latency}**.

The ensemble against the single model on the same test patients, largest component kept:
{format_difference(against)}.
"""


class CardError(ValueError):
    """A missing or unusable input of the card (one line)."""


def read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise CardError(f"{path}: not JSON ({error})") from None


def read_record(record: Path) -> dict:
    missing = [name for name in RECORD_FILES if not (record / name).is_file()]
    if missing:
        raise CardError(f"{record}: missing {', '.join(missing)} (a run's record: see this module's docstring)")
    loaded = {name: read_json(record / name) for name in RECORD_FILES if name.endswith(".json")}
    with (record / "history.csv").open(newline="") as handle:
        loaded["history.csv"] = list(csv.DictReader(handle))
    loaded["parity"] = [(path, read_json(path)) for path in sorted((record / "export").glob("*_parity.json"))]
    return loaded


def parity_of(record: dict, fmt: str) -> tuple[dict, str]:
    """The validation parity report (JSON and Markdown) that covers `fmt`."""
    for path, report in record["parity"]:
        if fmt in report.get("exports", {}):
            return report, path.with_suffix(".md").read_text()
    raise CardError(f"the run's record has no export/*_parity.json covering {fmt} (saunet-export writes it)")


def bundled(models: Path) -> dict:
    """Sizes, metadata and parameter count of the bundled pair."""
    from saunet.training.evaluate import load_keras_model

    int8, keras_file = models / "saunet_int8.tflite", models / "saunet_float.keras"
    metadata = read_metadata(int8)
    if metadata.get("format") not in INT8_FORMATS:
        raise CardError(f"{int8}: is a {metadata.get('format') or 'non-saunet'} model, not an int8 export")
    model, _, _ = load_keras_model(keras_file)
    return {
        "folder": models,
        "metadata": metadata,
        "int8_mb": int8.stat().st_size / 1e6,
        "float_mb": keras_file.stat().st_size / 1e6,
        "parameters": model.count_params(),
    }


def validation_table(val: dict) -> str:
    rows = summary_rows(val, lambda v: "n/a" if v is None else f"{v:.3f}")
    return "\n".join(
        [
            "| validation patients, best checkpoint (float) | |",
            "|---|---|",
            *(f"| {label} | {value} |" for label, value in rows),
        ]
    )


def dropblock_text(arch: dict) -> str:
    """DropBlock as trained: keep 1.0 leaves the layers in the graph but drops nothing."""
    if not arch.get("dropblock", True):
        return "no DropBlock"
    if arch["keep_prob"] >= 1.0:
        return "DropBlock off in training (keep 1.0; the layers are the identity)"
    return f"DropBlock block {arch['block_size']}, keep {arch['keep_prob']} (training only)"


def ensemble_files_table(ensemble: dict, folder: Path) -> str:
    """The Files rows of a bundled ensemble."""
    sizes = sum((folder / m).stat().st_size for m in ensemble["models"]) / 1e6
    return (
        f"| `ensemble/fold0_int8.tflite` ... `fold{len(ensemble['models']) - 1}_int8.tflite` | the "
        f"{len(ensemble['models'])} cross-validation fold models' int8 exports, averaged"
        f"{' with the mirrored scan' if ensemble['tta'] else ''}: **the default of `saunet-run`** | "
        f"{sizes:.2f} MB in all |\n| `ensemble/ensemble.json` | which files, their folds and test patients, "
        "whether mirrored | |"
    )


def default_variant(ensemble: dict) -> str | None:
    """The cv_decisions variant that scores what saunet-run does with this ensemble by default
    (largest component, holes filled, its threshold), or None if that report has no such variant."""
    threshold = ensemble.get("threshold")
    if ensemble["tta"]:
        return None if threshold else "tta+holes"
    return threshold_variant(threshold) if threshold else "holes"


def ensemble_section(ensemble: dict, bench: dict, oof: dict, single_row: str) -> str:
    """The bundled ensemble: its members, the out-of-fold figures, and the test figures against the single model.

    `oof` is saunet.benchmarks.cv_decisions' report over the same fold runs (the plain and mirrored
    variants); the test figures are the bench rows of the ensemble and of the single int8 model.
    """
    rows = {r["name"]: r for r in bench["rows"]}
    count = len(ensemble["models"])
    plain, mirrored = f"{ENSEMBLE_ROW} of {count}", f"{ENSEMBLE_ROW} of {count} --tta"
    missing = [n for n in (single_row, plain, mirrored) if not rows.get(n, {}).get("scores")]
    if missing:
        raise CardError(f"the bench report has no test scores for {', '.join(missing)} (saunet-bench --ensemble)")
    runs = sorted(Path(r).parent.name for r in oof["runs"])
    if len(set(runs)) != 1 or runs[0] != ensemble["members"][0]["run"].split("/")[0]:
        raise CardError(f"the out-of-fold report is of {runs[0]}, the ensemble of {ensemble['members'][0]['run']}")
    one = bench["threads"][0]
    members = "\n".join(
        f"| {m['fold']} | `{m['run']}` | {m['validation_patients']} | {LABELS[m['format']]} | {m['chosen']} |"
        for m in ensemble["members"]
    )

    def figures(name: str) -> str:
        scores = rows[name]["scores"]
        lcc = [p["dice_3d_lcc"] for p in scores["per_patient"]]
        low, high = bootstrap_interval(lcc)
        whole = rows[name].get("slice_ms", {}).get(str(one), {}).get("p50")
        call = rows[name]["latency_ms"][str(one)]["p50"]
        filled = scores.get("dice_3d_filled", {}).get("mean")
        return (
            f"{scores['threshold']:g} | {'n/a' if filled is None else f'{filled:.3f}'} | "
            f"{scores['dice_3d_lcc']['mean']:.3f} ({low:.3f} to {high:.3f}) | {scores['dice_3d_lcc']['median']:.3f} | "
            f"{scores['dice_3d']['mean']:.3f} | {call:.1f} | {'n/a' if whole is None else f'{whole:.1f}'}"
        )

    variants = [("plain", "each patient by its fold's model"), ("tta", "the same, mirrored scan averaged in")]
    default = default_variant(ensemble)
    if default in oof["summary"]:
        steps = ["mirrored scan averaged in"] * ensemble["tta"] + ["holes filled"]
        threshold = ensemble.get("threshold")
        steps.append(f"threshold {threshold:g}" if threshold else "the members' threshold")
        variants.append((default, f"saunet-run's default ({', '.join(steps)})"))
    oof_rows = "\n".join(
        f"| {label} | {oof['summary'][key]['mean']:.3f} ({oof['summary'][key]['interval'][0]:.3f} to "
        f"{oof['summary'][key]['interval'][1]:.3f}) | {oof['summary'][key]['median']:.3f} |"
        for key, label in variants
    )
    tta_change = oof["against_plain"]["tta"]
    default_row = rows[mirrored if ensemble["tta"] else plain]
    goals = ensemble_goals(
        default_row["scores"],
        rows[single_row]["scores"],
        oof["summary"]["plain"],
        default_row.get("slice_ms", {}).get(str(one), {}).get("p50"),
    )
    epochs = sorted({m["epochs"] for m in ensemble["members"]})
    return f"""## The ensemble

{count} models trained by cross-validation, each on {count - 1} of {count} parts of the {oof["patients"]}
non-test patients; fold 0's command (the others differ only in `--fold`):

    {ensemble["training"]}

Each fold's final model (epoch {", ".join(str(e) for e in epochs)}) exported to int8 and put through the
parity gate on its own validation patients. The test patients above are those of every fold (no
member trained on them).

| fold | run | validation patients | int8 file | why this file |
|---|---|---|---|---|
{members}

Out-of-fold, float models (`python -m saunet.benchmarks.cv_decisions`, {oof["date"]}, {oof["machine"]}):
each of the {oof["patients"]} patients scored by the model that did not train on it, mean per-patient 3D
Dice with the largest component kept (95% bootstrap interval), beside the data set author's 22-fold
cross-validation (mean 0.836, median 0.873):

| out of fold | mean (95% interval) | median |
|---|---|---|
{oof_rows}

The mirrored scan changed the out-of-fold mean by {tta_change["mean"]:+.4f} (paired 95% interval
{tta_change["interval"][0]:+.4f} to {tta_change["interval"][1]:+.4f}; {tta_change["better"]} patients better,
{tta_change["worse"]} worse).

On the {len(bench["patients"])} test patients, int8 through the device runtime (`saunet-bench --ensemble`,
{bench["date"]}, {bench["machine"]}); model ms: the model calls of one slice, p50 at {one} thread;
slice ms: the whole 256x256 slice (preprocessing, every call, probabilities back to size), p50 at {one} thread;
saunet-run's default: the largest component kept and each slice's enclosed holes filled, at the
configuration's threshold (the ensemble's is {ensemble.get("threshold") or "its members' own"}):

| configuration | threshold | Dice, saunet-run's default: mean | Dice, largest component: mean (95% interval) | median | Dice, all components: mean | model ms | slice ms |
|---|---|---|---|---|---|---|---|
| single int8 model (`saunet-run --fast`) | {figures(single_row)} |
| ensemble of {count} | {figures(plain)} |
| ensemble of {count}, mirrored too | {figures(mirrored)} |

{goals}"""


def card(
    record: dict, bench: dict, bench_name: str, models: dict, notes: str, ensemble: dict | None = None, oof=None
) -> str:
    config, split, state = record["config.json"], record["split.json"], record["state.json"]
    val = record["val-scores.json"]
    chosen = models["metadata"]["format"]
    parity, parity_md = parity_of(record, chosen)
    other = next(f for f in INT8_FORMATS if f != chosen)
    run = Path(config["out"]).name
    sources = {
        "the bundled model": models["metadata"].get("source"),
        "the record": run,
        "the bench report": Path(bench["run"]).name,
    }  # reports before 2026-11-24 hold a path
    if len(set(sources.values())) > 1:
        raise CardError("not one run: " + ", ".join(f"{k} is {v}'s" for k, v in sources.items()))
    rows = {r["name"]: r for r in bench["rows"]}
    names = [REFERENCE_ROW, f"tflite {chosen}"] + (
        [f"tflite {other}"] if rows.get(f"tflite {other}", {}).get("scores") else []
    )
    missing = [n for n in names[:2] if not rows.get(n, {}).get("scores")]
    if missing:
        raise CardError(f"{bench_name}: no test scores for {', '.join(missing)}")
    shown = {
        REFERENCE_ROW: "float (Keras)",
        f"tflite {chosen}": f"{LABELS[chosen]} (bundled)",
        f"tflite {other}": f"{LABELS[other]} (not shipped)",
    }
    test_tables = tables(bench, tuple(names))
    for name, label in shown.items():
        test_tables = test_tables.replace(name, label)
    float_scores, int8_scores = rows[REFERENCE_ROW]["scores"], rows[f"tflite {chosen}"]["scores"]
    lcc = int8_scores["dice_3d_lcc"]["mean"]
    lcc_low, lcc_high = bootstrap_interval([p["dice_3d_lcc"] for p in int8_scores["per_patient"]])
    spec = Preprocessing.from_dict(config["preprocessing"])
    arch = config["model"] if "model" in config else config["architecture"]  # records from before ModelSpec
    size = spec.input_size
    val_epochs = ", ".join(f"{float(h['val_dice_3d']):.3f}" for h in record["history.csv"])
    normalise = (
        "none: the channels as stored"
        if spec.normalise == "none"
        else f"`{spec.normalise}` (`saunet.runtime.preprocess`), applied after resizing"
    )
    parity_body = parity_md.split("\n", 2)[2].strip()
    rule = pick_int8(record["parity"])
    if rule is not None and rule.format == chosen:
        bundled_line = f"Bundled: the **{LABELS[chosen]}** file, the rule's pick: {rule.reason()}."
    else:
        pick = f"the {LABELS[rule.format]} file" if rule else "none (no int8 file is within the tolerance)"
        bundled_line = f"Bundled: the **{LABELS[chosen]}** file, named by hand; the rule picks {pick}."
    float32_mb = parity["sizes_bytes"].get("float32", 0) / 1e6
    test_change = "; ".join(
        f"{shown[n]}: {rows[n]['dice_change']:+.3f} (mask agreement {100 * rows[n]['agreement']:.2f}%)"
        for n in names[1:]
        if rows[n].get("dice_change") is not None
    )
    return f"""# Model card: saunet's bundled SA-UNet (int8 and float)

**Not a medical device.** For research on FLAIR abnormality in lower-grade glioma MRI only.
It has not been validated for any clinical use.

Written by `python -m saunet.benchmarks.model_card` from the run's record
(`checkpoints/{run}`), the test report (`benchmarks/reports/{bench_name}`) and the
bundled files.

## Files

| file | what | size |
|---|---|---|
| `saunet_int8.tflite` | fully-int8 TFLite (int8 input and output, batch 1), {models["metadata"].get("quantization", chosen)}; its metadata holds the preprocessing below. {"`saunet-run --fast`" if ensemble else "The default model of `saunet-run`"}. | {models["int8_mb"]:.2f} MB |
| `saunet_float.keras` | the float Keras model it was made from (no optimiser state) | {models["float_mb"]:.1f} MB |
| `saunet_float.json` | the float model's preprocessing and patient split | |
{ensemble_files_table(ensemble, models["folder"] / "ensemble") if ensemble else ""}

## Model
- SA-UNet (after Guo et al. 2020, "SA-UNet: Spatial Attention U-Net for Retinal Vessel
  Segmentation"), `{config["preset"]}` preset: {PRESET_TEXT.get(config["preset"], config["preset"])}.
- Encoder {"-".join(str(f) for f in arch["filters"])}; {dropblock_text(arch)}.
- {models["parameters"]:,} parameters; {bench["gop"]:.2f} GOP a slice.
- Input: the slice resized (bilinear) to **{size}x{size}**; channels {", ".join(spec.channels)};
  intensity normalisation {normalise}; scaled by {spec.scale:.6g}.
- Output: tumour probability, resized back to the scan's size, thresholded at {spec.threshold}.

## Data
- LGG-MRI-Segmentation (Buda et al. 2019; TCGA-LGG images from TCIA), the `kaggle_3m` layout.
- Split by patient (`saunet.training.dataset.split_cases`), fractions
  {"/".join(f"{x:g}" for x in split["fractions"])}, seed {split["seed"]}: {len(split["train"])} training patients,
  {len(split["val"])} validation ({sum(p["slices"] for p in val["per_patient"])} slices), {len(split["test"])} test ({bench["slices"]} slices).
- The test patients, read only for the results below: {", ".join(split["test"])}.

## Training
    {training_command(config)}

Best validation mean per-patient 3D Dice at epoch {state["best_epoch"]} of {state["epoch"]}
({state["best_score"]:.3f}); that checkpoint is the float model. Validation Dice after each epoch:
{val_epochs}.

{validation_table(val)}

## Export and the int8 file bundled
`saunet-export` parity on the validation patients (the rule: bundle the int8 file whose masks
agree best with the float model's among those within the tolerance):

{parity_body}

{bundled_line}

## Results on the {len(bench["patients"])} test patients

    saunet-bench --model runs/{run} --data data/kaggle_3m

{bench["date"]}, {bench["machine"]}. Every metric by `saunet.runtime.metrics` on masks at the
scans' own size; float through Keras, int8 through the device runtime, one slice at a time.

{test_tables}

Change against the float model on the test patients: {test_change}. The int8 file is
{models["int8_mb"]:.2f} MB{f", {100 * models['int8_mb'] / float32_mb:.0f}% of the float32 TFLite file" if float32_mb else ""}.

**Goal: mean per-patient 3D Dice of at least {GOAL} with the largest component kept, for the
int8 model. {"Met" if lcc >= GOAL else "Missed"}: {lcc:.3f}** (float model {float_scores["dice_3d_lcc"]["mean"]:.3f}).
The 95% bootstrap interval of the int8 mean over these {len(int8_scores["per_patient"])} patients is {lcc_low:.3f} to
{lcc_high:.3f}: {goal_reading(lcc_low, lcc_high)}.

{ensemble_section(ensemble, bench, oof, f"tflite {chosen}") if ensemble else ""}
{notes.strip()}

### Beside the published figures (different definitions; do not compare the numbers blindly)

| source | metric | reported | this model (float / int8) |
|---|---|---|---|
| the seed notebook (suniash/brain_mri_segmentation) | soft Dice pooled over a batch of slices, smoothing 100, empty slices included; slice-level split, checkpoint chosen on its test set | 0.9047 | {float_scores["seed_soft_dice"]:.3f} / {int8_scores["seed_soft_dice"]:.3f} (pooled over all {bench["slices"]} test slices) |
| Buda et al. 2019 (the data set's author), Keras U-Net | per-patient 3D Dice, thresholded, largest component kept; 22-fold cross-validation over 110 patients | mean 0.836, median 0.873 | mean {float_scores["dice_3d_lcc"]["mean"]:.3f} / {lcc:.3f}, median {float_scores["dice_3d_lcc"]["median"]:.3f} / {int8_scores["dice_3d_lcc"]["median"]:.3f} |
| mateuszbuda/brain-segmentation-pytorch | the same, 10 validation patients, model chosen on them | mean 0.91 | validation: {val["dice_3d_lcc"]["mean"]:.3f} (float) |

## Limits
- FLAIR abnormality in lower-grade glioma (WHO grade II-III) on the TCGA-LGG scans of five
  institutions only; other tumours, sequences, scanners or preprocessing are out of scope.
- Trained on {len(split["train"])} patients, scored on {len(split["test"])}: the test figures carry a wide uncertainty.
- Scans are expected as in the Kaggle data: axial slices whose three channels are
  pre-contrast, FLAIR and post-contrast, skull included.
- Trained at {size}x{size}; masks are resized back to the scan's size, which blurs small tumours.
- The masks are the data set's single annotation; no inter-reader study.
- **Not a medical device**; not for diagnosis, treatment or any clinical decision.
- Licence: the weights were learnt from a data set listed under CC BY-NC-SA 4.0
  (non-commercial, share alike); its terms may extend to them. saunet's code is MIT.
"""


@click.command(context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.option("--record", required=True, type=click.Path(path_type=Path), help="the run's record (or run folder)")
@click.option(
    "--bench",
    "bench_path",
    required=True,
    type=click.Path(path_type=Path),
    help="saunet-bench's JSON report of the run on the test patients",
)
@click.option(
    "--notes", required=True, type=click.Path(path_type=Path), help="hand-written Markdown placed under the goal"
)
@click.option(
    "--oof",
    type=click.Path(path_type=Path),
    default=None,
    help="cv_decisions' JSON report of the bundled ensemble's folds (needed when an ensemble is bundled)",
)
@click.option("--models", type=click.Path(path_type=Path), default=MODELS, help="the bundled models' folder")
@click.option("--out", type=click.Path(path_type=Path), default=None, help="[default: MODELS/MODEL_CARD.md]")
def main(record: Path, bench_path: Path, oof: Path | None, notes: Path, models: Path, out: Path | None) -> None:
    """Write MODEL_CARD.md for the bundled models from the run's record and its test report."""
    try:
        description = models / "ensemble" / ENSEMBLE_FILE
        ensemble = read_json(description) if description.is_file() else None
        if ensemble and oof is None:
            raise CardError(f"{description}: an ensemble is bundled; pass its out-of-fold report (--oof)")
        text = card(
            read_record(record),
            read_json(bench_path),
            bench_path.name,
            bundled(models),
            notes.read_text(),
            ensemble,
            read_json(oof) if oof else None,
        )
        write_text(out or models / "MODEL_CARD.md", text)
    except KeyError as error:
        click.echo(f"error: {record} or {bench_path}: no {error} in it (made by another saunet version?)", err=True)
        sys.exit(1)
    except (CardError, ModelError, OSError, ValueError) as error:
        click.echo(f"error: {error}", err=True)
        sys.exit(1)
    click.echo(f"written: {out or models / 'MODEL_CARD.md'}")


if __name__ == "__main__":
    main()
