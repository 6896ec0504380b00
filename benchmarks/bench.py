"""`saunet-bench --model RUN --data DIR`: every export of a run, side by side, on its test patients.

Rows: the Keras float model through TensorFlow (CPU, and GPU when TensorFlow sees one), each
format of quantize/formats.py (the LiteRT files, and ONNX Runtime float32 through tf2onnx and
int8 by its own static QDQ quantization), and the int8 model on the Edge TPU or an external
delegate when present. Missing exports are made first (into RUN/export/, as saunet-export names
them). Each row is measured in its own process (saunet.benchmarks.measure) at 1, 2 and all
threads: latency percentiles of the model call after warm-up, GOP/s, the latency over the
floor of the model's own convolutions in the same engine (saunet.benchmarks.floor), peak
memory, and, at all threads, the per-patient Dice on the test patients and the mask agreement
with the Keras float model.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import click
import numpy as np

from saunet.benchmarks.report import ENSEMBLE_ROW
from saunet.quantize.formats import FORMATS, LITERT, Format
from saunet.runtime.ensemble import ENSEMBLE_FILE, BundledEnsemble
from saunet.runtime.interpreter import EDGETPU_LIBRARY


@dataclass
class Row:
    """One line of the table.

    Args:
        name: what the row is, as printed.
        kind: the engine (saunet.benchmarks.engines.ENGINES).
        model: the model file the engine loads (several for an ensemble).
        delegate: a TFLite delegate ("edgetpu" or a library path), or "gpu" for Keras.
        floor: the floor (saunet.benchmarks.floor variant, e.g. "litert int8") its latency is read against.
        calls: model calls a slice (2 with --tta, one a member for an ensemble), for the GOP/s column and the floor (one floor a call).
        threshold: the probability threshold its Dice is scored at, if not the run's (a bundled ensemble's).
        skipped: why the row is not measured (None: it is).
        results: per thread count, what the measuring process returned.
        error: why the measurement failed, when it did.
    """

    name: str
    kind: str
    model: Path | tuple[Path, ...] | None
    delegate: str | None = None
    floor: str | None = None
    calls: int = 1
    threshold: float | None = None
    skipped: str | None = None
    results: dict[int, dict] = field(default_factory=dict)
    error: str | None = None

    @property
    def status(self) -> str:
        if self.skipped:
            return f"skipped: {self.skipped}"
        if self.error:
            return f"failed: {self.error}"
        return "ok"


@dataclass(frozen=True)
class Settings:
    """How much is measured: `--quick` is the reduced version the tests run."""

    warmup: int = 10
    runs: int = 100
    patients: int | None = None
    qat_steps: int | None = None

    @classmethod
    def quick(cls) -> Settings:
        return cls(warmup=2, runs=10, patients=2, qat_steps=2)


def thread_counts() -> list[int]:
    """1, 2 and all cores, without repeats (on a 2-core machine, 2 is all)."""
    return sorted({1, min(2, os.cpu_count() or 1), os.cpu_count() or 1})


def export_missing(run: Path, data: Path, settings: Settings) -> dict[str, Path]:
    """The run's TFLite exports (RUN/export/saunet_<format>.tflite), made with saunet-export where missing."""
    from saunet.quantize.export import QAT_EPOCHS, QAT_LEARNING_RATE, QAT_STEPS
    from saunet.quantize.pipeline import export, output_paths

    names = [f.name for f in LITERT]
    paths = output_paths(run, run, None, names)
    missing = [n for n in names if not paths[n].is_file()]
    if missing:
        click.echo(f"exporting {', '.join(missing)} into {run / 'export'}", err=True)
        export(
            run,
            missing,
            None,
            data,
            qat_epochs=QAT_EPOCHS,
            qat_lr=QAT_LEARNING_RATE,
            qat_steps=settings.qat_steps or QAT_STEPS,
            calibration=200,
            tolerance=0.01,
            force=False,
        )
    return paths


def calibration_inputs(run: Path, data: Path, spec, count: int) -> list[np.ndarray]:
    """Batch-1 model inputs from the run's training patients: the slices the LiteRT int8 exports calibrate on."""
    from saunet.quantize.convert import representative
    from saunet.runtime.preprocess import normalise_intensity
    from saunet.training.dataset import find_cases, load_cases, stack

    wanted = set(json.loads((run / "split.json").read_text())["train"])
    images, _ = stack(load_cases([c for c in find_cases(data) if c.name in wanted], spec.input_size))
    return [x for (x,) in representative(normalise_intensity(images, spec.normalise), spec.scale, count)()]


def export_onnx(fmt: Format, static, path: Path, float_path: Path, inputs) -> None:
    """Makes an ONNX format's file unless already there; `inputs()` gives the int8 calibration inputs."""
    from saunet.benchmarks.onnx_models import export_float, quantize_int8

    if path.is_file():
        return
    if not float_path.is_file():
        export_float(static, float_path)
    if fmt.name == "onnx-int8":
        quantize_int8(float_path, path, inputs())


def floor_of(fmt: Format) -> str:
    """The floor a format's latency is read against: its engine, int8 or float32 (float16 and dynamic
    files compute in float32)."""
    return f"{fmt.engine} {'int8' if 'int8' in fmt.name else 'float32'}"


def make_rows(
    run: Path,
    static,
    paths: dict[str, Path],
    delegate: str | None,
    inputs,
    ensemble: tuple[Path, ...] = (),
    ensemble_threshold: float | None = None,
) -> list[Row]:
    """The table's rows, in order, with those that cannot run here marked skipped and why.

    `ensemble`: int8 models averaged as saunet-run averages several --model files (each of the
    run's architecture, so the floor of one call applies to each), with and without --tta, at
    `ensemble_threshold` if given.
    """
    import tensorflow as tf

    best = run / "best.keras"
    rows = [Row("keras float32 (TF CPU)", "keras", best)]
    gpu = Row("keras float32 (TF GPU)", "keras", best, delegate="gpu")
    if not tf.config.list_physical_devices("GPU"):
        gpu.skipped = "TensorFlow sees no GPU"
    rows.append(gpu)
    rows += [Row(f"tflite {f.name}", "tflite", paths[f.name], floor=floor_of(f)) for f in LITERT]
    rows += [
        Row(f"tflite {f.name} --tta", "tflite-tta", paths[f.name], floor=floor_of(f), calls=2)
        for f in LITERT
        if f.integer_io
    ]
    if ensemble:
        count = len(ensemble)
        rows += [
            Row(name, kind, ensemble, floor="litert int8", calls=calls, threshold=ensemble_threshold)
            for name, kind, calls in (
                (f"{ENSEMBLE_ROW} of {count}", "tflite", count),
                (f"{ENSEMBLE_ROW} of {count} --tta", "tflite-tta", 2 * count),
            )
        ]
    float_onnx = run / "export" / f"saunet{next(f for f in FORMATS if f.name == 'onnx-float32').suffix}"
    for fmt in (f for f in FORMATS if f.engine == "onnxruntime"):
        row = Row(
            f"onnxruntime {fmt.name.removeprefix('onnx-')}",
            "onnx",
            run / "export" / f"saunet{fmt.suffix}",
            floor=floor_of(fmt),
        )
        try:
            export_onnx(fmt, static, row.model, float_onnx, inputs)
        except ImportError as error:
            row.skipped = f"{error.name} not installed (pip install 'saunet[bench]')"
        except Exception as error:  # tf2onnx and onnxruntime.quantization raise many types; the row says why
            row.error = f"ONNX export failed ({type(error).__name__}: {str(error).splitlines()[0][:120]})"
        rows.append(row)
    edgetpu = Row(
        "tflite int8 (Edge TPU)", "tflite", paths["int8"].with_name("saunet_int8_edgetpu.tflite"), delegate="edgetpu"
    )
    if not edgetpu.model.is_file():
        edgetpu.skipped = f"no {edgetpu.model.name} (edgetpu_compiler output)"
    elif not edgetpu_present():
        edgetpu.skipped = f"{EDGETPU_LIBRARY} not found"
    rows.append(edgetpu)
    external = Row(
        f"tflite int8 ({Path(delegate).name if delegate else 'external delegate'})",
        "tflite",
        paths["int8"],
        delegate=delegate,
    )
    if not delegate:
        external.skipped = "no external delegate given (--delegate PATH)"
    rows.append(external)
    return rows


def ensemble_of(given: tuple[Path, ...]) -> tuple[tuple[Path, ...], float | None]:
    """The ensemble's .tflite files and threshold: a bundled ensemble's folder as its ensemble.json
    describes it; otherwise each given file and every .tflite in each given folder (sorted), at the
    run's threshold (None)."""
    if len(given) == 1 and (given[0] / ENSEMBLE_FILE).is_file():
        described = BundledEnsemble.read(given[0] / ENSEMBLE_FILE)
        return described.models, described.threshold
    files: list[Path] = []
    for path in given:
        if path.is_dir():
            found = sorted(path.glob("*.tflite"))
            if not found:
                raise ValueError(f"{path}: --ensemble folder holds no .tflite model")
            files += found
        elif path.is_file():
            files.append(path)
        else:
            raise ValueError(f"{path}: --ensemble model not found")
    return tuple(files), None


def edgetpu_present() -> bool:
    import ctypes

    try:
        ctypes.CDLL(EDGETPU_LIBRARY)
        return True
    except OSError:
        return False


def measure(
    row: Row, threads: int, slices: Path, spec: dict, settings: Settings, masks_out: Path | None, scratch: Path
) -> dict:
    """Runs one measuring process; raises RuntimeError with its one-line error."""
    job = {
        "kind": row.kind,
        "model": [str(m) for m in row.model] if isinstance(row.model, tuple) else str(row.model),
        "threads": threads,
        "delegate": row.delegate,
        "warmup": settings.warmup,
        "runs": settings.runs,
        "slices": str(slices),
        "spec": spec,
        "masks_out": str(masks_out) if masks_out else None,
        "threshold": row.threshold,
    }
    return run_job(job, scratch)


def measure_floor(engine: str, models: list[tuple[Path, int]], threads: int, settings: Settings, scratch: Path) -> dict:
    """Times a floor's layer models in one measuring process (see measure.floor)."""
    job = {
        "kind": "floor",
        "engine": engine,
        "models": [[str(p), n] for p, n in models],
        "threads": threads,
        "warmup": settings.warmup,
        "runs": settings.runs,
    }
    return run_job(job, scratch)


def run_job(job: dict, scratch: Path) -> dict:
    job_file = scratch / "job.json"
    job_file.write_text(json.dumps(job))
    done = subprocess.run(
        [sys.executable, "-m", "saunet.benchmarks.measure", str(job_file)], capture_output=True, text=True
    )
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines()
        raise RuntimeError(lines[-1] if lines else f"exit status {done.returncode}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def write_slices(volumes, folder: Path) -> tuple[Path, np.ndarray]:
    """The test slices as .npy files the measuring processes memory-map; and the masks."""
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / "images.npy", np.concatenate([v.images for v in volumes]))
    masks = np.concatenate([v.masks for v in volumes])
    np.save(folder / "masks.npy", masks)
    np.save(folder / "cases.npy", np.array([v.case for v in volumes for _ in range(len(v.images))]))
    return folder, masks


def bench(
    source: Path, data: Path | None, delegate: str | None, settings: Settings, ensemble: tuple[Path, ...] = ()
) -> dict:
    """Measures every row and returns the report (see report.py for what it holds)."""
    from saunet.benchmarks.graph import count_ops
    from saunet.quantize.qat import without_dropblock
    from saunet.training.evaluate import load_keras_model, load_split, model_spec_of, split_cases_of

    model, run, spec = load_keras_model(source)
    data = Path(data or json.loads((run / "config.json").read_text())["data"])
    patients = split_cases_of(run, "test")[: settings.patients]
    volumes = load_split(data, patients)
    paths = export_missing(run, data, settings)
    static = without_dropblock(model, model_spec_of(run), batch_size=1)
    calibration = 16 if settings.patients is not None else 200
    rows = make_rows(
        run, static, paths, delegate, lambda: calibration_inputs(run, data, spec, calibration), *ensemble_of(ensemble)
    )
    gop = count_ops(static)
    threads = thread_counts()
    started, load_at_start = time.time(), os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as scratch_name:
        scratch = Path(scratch_name)
        slices, truth = write_slices(volumes, scratch / "slices")
        masks: dict[str, np.ndarray] = {}
        for row in rows:
            if row.skipped:
                continue
            for count in threads:
                masks_out = scratch / "masks.npy" if count == threads[-1] else None
                click.echo(f"{row.name}: {count} thread(s)", err=True)
                try:
                    row.results[count] = measure(row, count, slices, spec.to_dict(), settings, masks_out, scratch)
                except RuntimeError as error:
                    row.error = str(error)
                    break
                if masks_out:
                    masks[row.name] = np.unpackbits(np.load(masks_out))[: truth.size].astype(bool)
        floors = measure_floors(static, {r.floor for r in rows if r.floor and r.results}, threads, settings, scratch)
    from saunet.benchmarks.report import build_report

    return build_report(
        rows,
        floors,
        masks,
        gop,
        threads,
        patients,
        len(truth),
        run,
        settings,
        minutes=(time.time() - started) / 60,
        load=(load_at_start, os.getloadavg()[0]),
    )


def measure_floors(static, wanted: set[str], threads: list[int], settings: Settings, scratch: Path) -> dict:
    """Each wanted floor ("litert int8", ...) timed at each thread count: {floor: {threads: result}}.

    A floor that fails says so in its entry ({"error": ...}) rather than stopping the benchmark.
    """
    from saunet.benchmarks.floor import VARIANTS, write_floor_models

    folder = scratch / "floor"
    folder.mkdir()
    chosen = [v for v in VARIANTS if " ".join(v) in wanted]
    models = write_floor_models(static, folder, chosen)
    floors: dict = {}
    for name in sorted(wanted):
        if name not in models:
            floors[name] = {"error": "its engine is not installed"}
            continue
        floors[name] = {}
        for count in threads:
            click.echo(f"floor {name}: {count} thread(s)", err=True)
            try:
                floors[name][count] = measure_floor(name.split()[0], models[name], count, settings, scratch)
            except RuntimeError as error:
                floors[name] = {"error": str(error)}
                break
    return floors


@click.command(context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.option(
    "--model",
    "source",
    required=True,
    type=click.Path(path_type=Path),
    help="run folder (or its best.keras); its exports in RUN/export/ are used, missing ones made",
)
@click.option("--data", type=click.Path(path_type=Path), default=None, help="data folder [default: the run's]")
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=Path("benchmarks/reports"),
    help="folder for <date>-<machine>-<run>.md/.json/.png",
)
@click.option("--delegate", default=None, help="an external TFLite delegate library to add a row for")
@click.option(
    "--ensemble",
    type=click.Path(path_type=Path),
    multiple=True,
    help="int8 .tflite models (or a folder of them) to add as an averaged ensemble row, with and without --tta",
)
@click.option("--quick", is_flag=True, help="2 test patients, 10 timed runs, 2-step QAT: a smoke test, not a benchmark")
@click.option("--verbose", is_flag=True, help="show TensorFlow's own start-up and device messages")
def main(
    source: Path,
    data: Path | None,
    out: Path,
    delegate: str | None,
    ensemble: tuple[Path, ...],
    quick: bool,
    verbose: bool,
) -> None:
    """Benchmark every export of a trained run on its test patients: Dice, latency, GOP/s, memory."""
    from saunet.benchmarks.report import write_report
    from saunet.quantize.cli import FAILURES
    from saunet.training.quiet import load_tensorflow

    load_tensorflow(verbose)

    try:
        report = bench(source, data, delegate, Settings.quick() if quick else Settings(), ensemble)
    except FAILURES as error:
        click.echo(f"error: {error}", err=True)
        sys.exit(1)
    written = write_report(report, out)
    click.echo(report["markdown"])
    click.echo("report: " + ", ".join(str(p) for p in written))


if __name__ == "__main__":
    main()
