"""What saunet-run spends outside the model: decode, preprocess, postprocess, writing, vs invoke.

    python -m saunet.benchmarks.runtime_overhead --model saunet_int8.tflite [--scan examples/slices/X.png]

The steps are saunet-run's (Segmenter.predict and the same output functions), timed over repeated runs
on one 256x256 slice after warm-up; the medians are compared. Goal (issue 4): everything
outside `invoke` costs at most 15% of `invoke`. Runs without TensorFlow.

The step medians add up what a scan costs one step after another. saunet-run itself writes a
scan's PNGs on a second thread while the next scan runs, so its time per scan in a batch is
also measured: saunet-run (in-process) on --runs + 1 copies of the slice minus saunet-run on
one copy, divided by --runs (the difference cancels opening the model).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from saunet.benchmarks.report import stamped, write_json
from saunet.runtime import cli
from saunet.runtime.outputs import overlay, save_png, summarize
from saunet.runtime.preprocess import read_image
from saunet.runtime.segmenter import Segmenter

DEFAULT_SCAN = Path(__file__).resolve().parents[1] / "examples" / "slices" / "TCGA_DU_5855_19951217_19.png"


def batch_ms_per_scan(model: Path, scan: Path, runs: int, threads: int | None) -> float:
    """saunet-run's wall time per scan on a folder of copies of `scan`, without opening the model."""

    def timed(copies: int) -> float:
        with tempfile.TemporaryDirectory() as folder:
            scans = Path(folder) / "scans"
            scans.mkdir()
            for n in range(copies):
                (scans / f"{n:04d}{scan.suffix}").symlink_to(scan.resolve())
            args = [str(scans), "--model", str(model), "--out", str(Path(folder) / "out")]
            args += ["--threads", str(threads)] if threads else []
            started = time.perf_counter()
            with contextlib.redirect_stderr(io.StringIO()), contextlib.suppress(SystemExit):
                cli.main(args, standalone_mode=False)
            return time.perf_counter() - started

    timed(3)
    return 1e3 * (timed(runs + 1) - timed(1)) / runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--scan", type=Path, default=DEFAULT_SCAN)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    segmenter = Segmenter(args.model, args.threads)
    steps: dict[str, list[float]] = {k: [] for k in ("decode", "preprocess", "invoke", "postprocess", "write")}
    with tempfile.TemporaryDirectory() as out:
        for run in range(args.runs + 3):
            t0 = time.perf_counter()
            pixels = read_image(args.scan)
            t1 = time.perf_counter()
            prediction = segmenter.predict(pixels)
            mask = (prediction.probability >= segmenter.spec.threshold).astype(np.uint8)
            summarize(prediction.probability, mask)
            t4 = time.perf_counter()
            save_png(Path(out) / "pred.png", mask * 255)
            save_png(Path(out) / "overlay.png", overlay(pixels, mask))
            t5 = time.perf_counter()
            if run >= 3:
                steps["decode"].append(1e3 * (t1 - t0))
                steps["preprocess"].append(prediction.preprocess_ms)
                steps["invoke"].append(prediction.invoke_ms)
                steps["postprocess"].append(1e3 * (t4 - t1) - prediction.preprocess_ms - prediction.invoke_ms)
                steps["write"].append(1e3 * (t5 - t4))
    median = {name: statistics.median(values) for name, values in steps.items()}
    outside = sum(v for k, v in median.items() if k != "invoke")
    ratio = outside / median["invoke"]
    batch_ms = batch_ms_per_scan(args.model, args.scan, args.runs, args.threads)
    batch_ratio = (batch_ms - median["invoke"]) / median["invoke"]
    report = stamped(
        {
            "model": str(args.model),
            "backend": segmenter.backend,
            "threads": args.threads or "all cores",
            "scan": str(args.scan),
            "runs": args.runs,
            "median_ms": {k: round(v, 3) for k, v in median.items()},
            "outside_invoke_ratio": round(ratio, 4),
            "goal": "at most 0.15",
            "met": ratio <= 0.15,
            "saunet_run_batch_ms_per_scan": round(batch_ms, 3),
            "saunet_run_batch_outside_invoke_ratio": round(batch_ratio, 4),
        }
    )
    print(
        f"{report['date']}, {report['machine']}, {segmenter.backend}, {report['threads']} thread(s), "
        f"{args.runs} runs on {args.scan.name}"
    )
    for name, value in median.items():
        print(f"  {name:<12} {value:8.2f} ms (median)")
    print(
        f"outside invoke: {outside:.2f} ms = {100 * ratio:.1f}% of invoke (goal: at most 15%) -> "
        f"{'met' if ratio <= 0.15 else 'missed'}"
    )
    print(
        f"saunet-run on a batch: {batch_ms:.2f} ms a scan, {100 * batch_ratio:.1f}% above invoke "
        f"({'met' if batch_ratio <= 0.15 else 'missed'}; PNGs written while the next scan runs)"
    )
    if args.json:
        write_json(args.json, report)


if __name__ == "__main__":
    main()
