"""The export pipeline behind saunet-export: a run's model to each format's .tflite file, then the
parity check against the float model on the run's validation patients."""

from __future__ import annotations

import json
from pathlib import Path

from saunet.quantize.formats import BY_NAME
from saunet.runtime.files import atomic_path
from saunet.runtime.interpreter import find_backend
from saunet.training.dataset import DataError


def output_paths(source: Path, run: Path, out: Path | None, names: list[str]) -> dict[str, Path]:
    """Where each format goes: --out itself for one format, else <stem><suffix> beside it."""
    if out is not None and len(names) == 1:
        return {names[0]: out}
    base = out if out is not None else run / "export" / "saunet.tflite"
    stem = base.name[: -len(".tflite")] if base.name.endswith(".tflite") else base.name
    return {name: base.with_name(stem + BY_NAME[name].suffix) for name in names}


def export(
    source: Path,
    names: list[str],
    out: Path | None,
    data: Path | None,
    qat_epochs: int,
    qat_lr: float,
    qat_steps: int | None,
    calibration: int,
    tolerance: float,
    force: bool,
) -> dict:
    from saunet.quantize.export import QatRecipe, export_formats
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
        raise DataError(
            f"{run}: not a saunet run folder (no split.json/config.json); the export needs "
            "its training and validation patients"
        )
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
    metadata = {
        "preset": model_spec.preset,
        "data": data.resolve().name,
        "split": {k: split[k] for k in ("seed", "fractions") if k in split},
        "validation_cases": split["val"],
        "float_val_dice_3d": state.get("best_score"),
        "source": source.resolve().relative_to(run.resolve().parent).as_posix(),
    }
    flatbuffers = export_formats(
        model,
        [BY_NAME[n] for n in names],
        model_spec,
        metadata,
        images,
        masks,
        qat_epochs,
        qat_lr,
        qat_steps,
        calibration,
        QatRecipe.of_run(config),
    )
    for name, flatbuffer in flatbuffers.items():
        with atomic_path(paths[name]) as partial:
            partial.write_bytes(flatbuffer)
        print(f"wrote {paths[name]} ({len(flatbuffer) / 1e6:.2f} MB)", flush=True)

    segmenters = {name: Segmenter(paths[name]) for name in names}
    report = compare(val, float_predict, {n: s.predict_batch for n, s in segmenters.items()}, spec.threshold, tolerance)
    sizes = {name: len(b) for name, b in flatbuffers.items()}
    report["files"] = {
        name: path.name for name, path in paths.items()
    }  # beside the report; the bundle's rule reads them
    stem = paths[names[0]].with_suffix("")
    json_path, md_path = write_report(report, sizes, stem)
    print(markdown(report, sizes), flush=True)
    print(f"parity report: {json_path}, {md_path}", flush=True)
    return {**report, "paths": {name: str(path) for name, path in paths.items()}}


def check_edgetpu(model: Path) -> None:
    """Runs the Edge TPU compiler or static check on `model`; writes <stem>_edgetpu.json."""
    from saunet.quantize.edgetpu import compile_or_check, summary
    from saunet.runtime.files import write_text

    report = compile_or_check(model)
    target = model.with_name(model.stem + "_edgetpu.json")
    write_text(target, json.dumps(report, indent=2) + "\n")
    print(summary(report), flush=True)
    print(f"Edge TPU report: {target}", flush=True)
