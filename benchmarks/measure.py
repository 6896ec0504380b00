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


def slice_latencies(engine, images: np.ndarray, runs: int) -> list[float]:
    """Milliseconds a whole slice takes, preprocessing to probabilities at the slice's size, `runs` times.

    What a user waits for per slice: the model call(s) and the runtime's work around them. The
    engine is already warm from `latencies`.
    """
    count = min(LATENCY_SLICES, len(images))
    times = []
    for i in range(runs):
        pixels = np.asarray(images[i % count])
        start = time.perf_counter()
        engine.probabilities(pixels)
        times.append(1e3 * (time.perf_counter() - start))
    return times


def accuracy(
    engine, images: np.ndarray, masks: np.ndarray, cases: np.ndarray, threshold: float, masks_out: Path
) -> tuple[dict, float]:
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


def floor(job: dict) -> dict:
    """Times each layer model of a floor alone (`runs` times after `warmup`, input set beforehand).

    The floor is the sum of the layers' medians, a layer that occurs n times in the model counted
    n times. For comparison, the same layers are also timed one after another, once each per run
    ("chained"): there, as in the model, each layer finds the caches holding the others' data.
    """
    from saunet.benchmarks.engines import FLOOR_ENGINES

    engines, counts, layers = [], [], []
    for path, count in job["models"]:
        engine = ENGINES[FLOOR_ENGINES[job["engine"]]](Path(path), job["threads"], None, None)
        engine.prime(engine.prepare(np.zeros(0)))
        for _ in range(job["warmup"]):
            engine.invoke()
        times = np.empty(job["runs"])
        for i in range(job["runs"]):
            start = time.perf_counter()
            engine.invoke()
            times[i] = 1e3 * (time.perf_counter() - start)
        engines.append(engine)
        counts.append(count)
        layers.append({"model": Path(path).name, "count": count, "p50_ms": float(np.median(times))})
    chained = np.zeros(job["runs"])
    for i in range(job["runs"]):
        for engine, count in zip(engines, counts):
            start = time.perf_counter()
            engine.invoke()
            chained[i] += count * 1e3 * (time.perf_counter() - start)
    return {
        "backend": engines[0].backend if engines else None,
        "layers": layers,
        "chained_ms": chained.tolist(),
        "peak_rss_mb": peak_rss_mb(),
    }


def run(job: dict) -> dict:
    if job["kind"] == "floor":
        return floor(job)
    spec = Preprocessing.from_dict(job["spec"])
    slices = Path(job["slices"])
    images = np.load(slices / "images.npy", mmap_mode="r")
    model = [Path(m) for m in job["model"]] if isinstance(job["model"], list) else Path(job["model"])
    engine = ENGINES[job["kind"]](model, job["threads"], job.get("delegate"), spec)
    times = latencies(engine, images, job["warmup"], job["runs"])
    result = {
        "backend": engine.backend,
        "latency_ms": times,
        "slice_ms": slice_latencies(engine, images, job["runs"]),
        "peak_rss_mb": peak_rss_mb(),
    }
    if job.get("masks_out"):
        masks = np.load(slices / "masks.npy", mmap_mode="r")
        cases = np.load(slices / "cases.npy")
        result["scores"], result["slices_per_s"] = accuracy(
            engine, images, masks, cases, job.get("threshold") or spec.threshold, Path(job["masks_out"])
        )
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
