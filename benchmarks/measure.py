"""One benchmark measurement, in a process of its own: `python -m saunet.benchmarks.measure JOB.json`.

A process per (row, thread count) because TensorFlow fixes its thread pools at start-up, so
that a crashing engine fails its row only, and so that the peak memory is that row's alone.
The job names the engine, model, threads, warm-up and timed runs, and the slices (.npy files
opened memory-mapped, so that only the slices used are counted in memory). The result is one
JSON line on stdout; a failure is one line on stderr and exit status 1.
"""
from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path

import numpy as np

from saunet.benchmarks.engines import ENGINES
from saunet.runtime.metrics import score_patients
from saunet.runtime.preprocess import Preprocessing

#: How many different slices the latency runs cycle through.
LATENCY_SLICES = 8


def peak_rss_mb() -> float:
    """This process's peak resident memory so far, in MB.

    Linux's VmHWM belongs to the process image, whereas ru_maxrss survives exec and so would
    report the parent's size (the benchmark's, with TensorFlow) for every row.
    """
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1 << 20) if sys.platform == "darwin" else peak / 1024


def latencies(engine, images: np.ndarray, warmup: int, runs: int) -> list[float]:
    """Milliseconds of `runs` model calls after `warmup` untimed ones, cycling over a few slices."""
    inputs = [engine.prepare(np.asarray(images[i])) for i in range(min(LATENCY_SLICES, len(images)))]
    for i in range(warmup):
        engine.call(inputs[i % len(inputs)])
    times = []
    for i in range(runs):
        start = time.perf_counter()
        engine.call(inputs[i % len(inputs)])
        times.append(1e3 * (time.perf_counter() - start))
    return times


def accuracy(engine, images: np.ndarray, masks: np.ndarray, cases: np.ndarray, threshold: float,
             masks_out: Path) -> tuple[dict, float]:
    """Per-patient scores of the engine's masks, and end-to-end slices/s (preprocess to mask).

    The thresholded masks are saved (bit-packed) for the mask agreement against the float model.
    """
    start = time.perf_counter()
    probabilities = np.stack([engine.probabilities(np.asarray(image)) for image in images])
    seconds = time.perf_counter() - start
    volumes = {}
    for case in dict.fromkeys(cases.tolist()):
        chosen = cases == case
        volumes[case] = (probabilities[chosen], np.asarray(masks[chosen]))
    np.save(masks_out, np.packbits(probabilities >= threshold))
    return score_patients(volumes, threshold), len(images) / seconds


def run(job: dict) -> dict:
    spec = Preprocessing.from_dict(job["spec"])
    slices = Path(job["slices"])
    images = np.load(slices / "images.npy", mmap_mode="r")
    engine = ENGINES[job["kind"]](Path(job["model"]), job["threads"], job.get("delegate"), spec)
    times = latencies(engine, images, job["warmup"], job["runs"])
    result = {"backend": engine.backend, "latency_ms": times, "peak_rss_mb": peak_rss_mb()}
    if job.get("masks_out"):
        masks = np.load(slices / "masks.npy", mmap_mode="r")
        cases = np.load(slices / "cases.npy")
        result["scores"], result["slices_per_s"] = accuracy(engine, images, masks, cases, spec.threshold,
                                                            Path(job["masks_out"]))
    return result


def main() -> None:
    try:
        job = json.loads(Path(sys.argv[1]).read_text())
        print(json.dumps(run(job)))
    except Exception as error:  # any failure fails this row only; the report says why
        message = str(error).strip().splitlines()[0] if str(error).strip() else ""
        print(f"{type(error).__name__}: {message}"[:300], file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
