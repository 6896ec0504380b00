"""saunet-bench's report: one table (Markdown and JSON), the goals as ratios, and two plots."""

from __future__ import annotations

import json
import os
from datetime import date
from pathlib import Path

import numpy as np

from saunet.benchmarks import machine
from saunet.runtime import __version__
from saunet.runtime.files import atomic_path, write_text
from saunet.runtime.metrics import mask_agreement

REFERENCE_ROW = "keras float32 (TF CPU)"
INT8_ROW = "tflite int8"
ENSEMBLE_ROW = "tflite int8 ensemble"


def percentiles(times: list[float]) -> dict:
    p50, p90, p99 = np.percentile(times, [50, 90, 99])
    return {"p50": float(p50), "p90": float(p90), "p99": float(p99), "runs": len(times)}


def row_summary(row, masks: dict, gop: float, floors: dict, threads: list[int]) -> dict:
    """One row's figures; Dice and agreement come from the all-threads measurement.

    `floors` is build_report's summary of the measured floors ({name: {threads: {"p50": ms}}}).
    """
    files = list(row.model) if isinstance(row.model, tuple) else [row.model] if row.model else []
    summary = {
        "name": row.name,
        "status": row.status,
        "model": [str(m) for m in files] if len(files) > 1 else (str(files[0]) if files else None),
        "size_mb": sum(m.stat().st_size for m in files) / 1e6 if files and all(m.is_file() for m in files) else None,
    }
    if not row.results:
        return summary
    latency = {t: percentiles(r["latency_ms"]) for t, r in row.results.items()}
    floor = floors.get(row.floor, {}).get("p50_ms", {})
    summary.update(
        backend=next(iter(row.results.values()))["backend"],
        latency_ms=latency,
        slice_ms={t: percentiles(r["slice_ms"]) for t, r in row.results.items() if "slice_ms" in r},
        gops={t: row.calls * gop / (v["p50"] / 1e3) for t, v in latency.items()},
        floor=row.floor,
        floor_ratio={t: v["p50"] / (row.calls * floor[t]) for t, v in latency.items() if t in floor},
        peak_rss_mb=max(r["peak_rss_mb"] for r in row.results.values()),
    )
    full = row.results.get(threads[-1], {})
    if "scores" in full:
        scores = full["scores"]
        summary.update(
            dice_3d_mean=scores["dice_3d"]["mean"],
            dice_3d_lcc_mean=scores["dice_3d_lcc"]["mean"],
            dice_3d_filled_mean=scores["dice_3d_filled"]["mean"],
            dice_per_patient={p["patient"]: p["dice_3d"] for p in scores["per_patient"]},
            slices_per_s=full["slices_per_s"],
            scores=scores,
        )
        if REFERENCE_ROW in masks and row.name in masks:
            summary["agreement"] = mask_agreement(masks[row.name], masks[REFERENCE_ROW])
    return summary


def goals(rows: dict, threads: list[int]) -> list[dict]:
    """Issues 6, 24 and 25's goals as ratios from this run; a goal whose rows did not run is 'not measured'."""
    one, every = threads[0], threads[-1]

    def p50(name: str, t: int) -> float | None:
        row = rows.get(name, {})
        return row.get("latency_ms", {}).get(t, {}).get("p50")

    def ratio(a, b):
        return None if a is None or b is None else a / b

    checks = [
        (
            f"int8 latency / float32 TFLite latency, {one} thread",
            ratio(p50(INT8_ROW, one), p50("tflite float32", one)),
            "<=",
            0.5,
        ),
        (
            f"Keras float batch-1 latency / int8 latency, {every} threads",
            ratio(p50(REFERENCE_ROW, every), p50(INT8_ROW, every)),
            ">=",
            5.0,
        ),
        (
            f"ONNX Runtime float32 latency / int8 latency, {every} threads",
            ratio(p50("onnxruntime float32", every), p50(INT8_ROW, every)),
            ">",
            1.0,
        ),
        (
            f"int8 latency / its own convolutions' floor, {one} thread",
            rows.get(INT8_ROW, {}).get("floor_ratio", {}).get(one),
            "<=",
            1.3,
        ),
    ]
    for name in (n for n in rows if n.startswith(ENSEMBLE_ROW)):
        whole = rows[name].get("slice_ms", {}).get(one, {}).get("p50")
        checks.append((f"{name}: p50 ms a whole 256x256 slice, {one} thread", whole, "<=", 60.0))
    out = []
    for name, value, op, target in checks:
        met = None if value is None else {"<=": value <= target, ">=": value >= target, ">": value > target}[op]
        out.append({"goal": f"{name} {op} {target}", "value": value, "met": met})
    return out


def markdown(report: dict) -> str:
    threads = report["threads"]
    head = ["format", "status", "size MB", "Dice", "ΔDice", "agreement"]
    head += [f"p50/p90/p99 ms @{t}" for t in threads] + [f"GOP/s @{t}" for t in threads]
    head += [f"× floor @{t}" for t in threads] + [f"slice ms @{t}" for t in threads]
    head += ["slices/s", "peak MB"]
    load = report.get("load_average")
    lines = [f"saunet-bench, {report['date']}, {report['machine']}", ""]
    if load:
        lines += [
            f"Load average (1 minute) when the measurements began: {load['start']:.2f}, when they ended: "
            f"{load['end']:.2f}, on {os.cpu_count()} cores (the benchmark itself adds up to 1); above that, "
            "other processes shared the cores and every latency below is contended.",
            "",
        ]
    lines += [
        f"Model: `{report['run']}` ({report['gop']:.2f} GOP a slice). Test patients: {len(report['patients'])}"
        f" ({report['slices']} slices). Dice: mean per-patient 3D Dice at the masks' own size; ΔDice and "
        f"agreement (thresholded masks, all pixels) against the Keras float model. Latency: the model call "
        f"alone on one slice, {report['settings']['runs']} runs after {report['settings']['warmup']} warm-up. "
        f"× floor: the p50 latency over the floor of the row's engine and number format (below). "
        f"Slice ms: p50 of a whole slice at its own size (preprocessing, every model call, probabilities "
        f"back to size), as saunet-run spends it. "
        f"slices/s: end to end (preprocess, model, mask back to size) at {threads[-1]} threads. Peak MB: peak "
        f"resident memory of the measuring process."
        + (" QUICK RUN: a smoke test, not a benchmark." if report["settings"]["quick"] else ""),
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]

    def num(value, fmt):
        return "" if value is None else format(value, fmt)

    for row in report["rows"]:
        cells = [
            row["name"],
            row["status"],
            num(row.get("size_mb"), ".2f"),
            num(row.get("dice_3d_mean"), ".4f"),
            num(row.get("dice_change"), "+.4f"),
            num(row.get("agreement"), ".4%"),
        ]
        for t in threads:
            lat = row.get("latency_ms", {}).get(t)
            cells.append(f"{lat['p50']:.1f} / {lat['p90']:.1f} / {lat['p99']:.1f}" if lat else "")
        cells += [num(row.get("gops", {}).get(t), ".1f") for t in threads]
        cells += [num(row.get("floor_ratio", {}).get(t), ".2f") for t in threads]
        cells += [num(row.get("slice_ms", {}).get(t, {}).get("p50"), ".1f") for t in threads]
        cells += [num(row.get("slices_per_s"), ".1f"), num(row.get("peak_rss_mb"), ".0f")]
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "Floor: each convolution of the model (Conv2D and Conv2DTranspose, its own shape and weights) "
        "made into a one-layer model of the row's engine and number format, timed alone (p50 of the "
        "interpreter's run, input set beforehand), summed over the model's convolutions. Run one after another "
        "instead, each layer finds the caches holding the others' data, as in the model: "
        + "; ".join(floor_text(name, floor) for name, floor in report["floors"].items()),
        "",
        "| goal | measured | met |",
        "|---|---|---|",
    ]
    for goal in report["goals"]:
        met = "not measured" if goal["met"] is None else ("yes" if goal["met"] else "no")
        lines.append(f"| {goal['goal']} | {num(goal['value'], '.2f')} | {met} |")
    return "\n".join(lines) + "\n"


def floor_text(name: str, floor: dict) -> str:
    if "error" in floor:
        return f"{name} failed ({floor['error']})"
    timed = ", ".join(f"{ms:.2f} ms @{t}" for t, ms in floor["p50_ms"].items())
    chained = ", ".join(f"{ms:.2f} ms @{t}" for t, ms in floor["chained_p50_ms"].items())
    return (
        f"{name} {timed} ({floor['convolutions']} convolutions, {floor['shapes']} distinct; "
        f"the same layers run one after another: {chained})"
    )


def floor_summary(results: dict) -> dict:
    """A measured floor ({threads: measure.floor's result}) as p50 per thread count and its layers."""
    if "error" in results:
        return {"error": results["error"]}
    first = next(iter(results.values()))
    return {
        "p50_ms": {t: sum(layer["count"] * layer["p50_ms"] for layer in r["layers"]) for t, r in results.items()},
        "chained_p50_ms": {t: percentiles(r["chained_ms"])["p50"] for t, r in results.items()},
        "backend": first["backend"],
        "shapes": len(first["layers"]),
        "convolutions": sum(layer["count"] for layer in first["layers"]),
        "layers": {t: r["layers"] for t, r in results.items()},
    }


def build_report(
    rows,
    floors: dict,
    masks: dict,
    gop: float,
    threads: list[int],
    patients: list[str],
    slices: int,
    run: Path,
    settings,
    minutes: float,
    load: tuple[float, float] | None = None,
) -> dict:
    """Everything the report holds: each row's figures, the measured floors and the goals.

    `load`: the 1-minute load average when the measurements began and ended; other processes
    on the cores slow every row, and the report says how busy the machine was.
    """
    floors = {name: floor_summary(results) for name, results in floors.items()}
    summaries = [row_summary(row, masks, gop, floors, threads) for row in rows]
    reference = next((s for s in summaries if s["name"] == REFERENCE_ROW), {})
    for summary in summaries:
        if summary.get("dice_3d_mean") is not None and reference.get("dice_3d_mean") is not None:
            summary["dice_change"] = summary["dice_3d_mean"] - reference["dice_3d_mean"]
    by_name = {s["name"]: s for s in summaries}
    report = {
        "date": date.today().isoformat(),
        "machine": machine.describe(),
        "machine_slug": machine.slug(),
        "saunet": __version__,
        "run": run.name,
        "gop": gop,
        "threads": threads,
        "patients": patients,
        "slices": slices,
        "settings": {"warmup": settings.warmup, "runs": settings.runs, "quick": settings.patients is not None},
        "isa": machine.isa_features(),
        "floors": floors,
        "rows": summaries,
        "goals": goals(by_name, threads),
        "minutes": minutes,
        "load_average": None if load is None else {"start": load[0], "end": load[1]},
    }
    report["markdown"] = markdown(report)
    return report


def stamped(fields: dict) -> dict:
    """`fields` after today's date and machine.describe(): a figure means little without when and where it
    was measured, and every report under benchmarks/reports/ opens with both."""
    return {"date": date.today().isoformat(), "machine": machine.describe(), **fields}


def write_json(path: Path, report: dict) -> None:
    """`report` as indented JSON, written atomically so that an interrupted benchmark leaves no half a report."""
    write_text(path, json.dumps(report, indent=2) + "\n")


def write_report(report: dict, folder: Path) -> list[Path]:
    """<date>-<machine>-<run>.md, .json, -latency.png and -dice.png in `folder`, each written atomically.

    The run's name is in the file name so that two runs benchmarked on one day keep both reports.
    """
    folder.mkdir(parents=True, exist_ok=True)
    stem = folder / f"{report['date']}-{report['machine_slug']}-{report['run']}"
    md, js = stem.with_suffix(".md"), stem.with_suffix(".json")
    write_text(md, report["markdown"])
    write_text(js, json.dumps({k: v for k, v in report.items() if k != "markdown"}, indent=2, default=str) + "\n")
    return [md, js, *plots(report, stem)]


def plots(report: dict, stem: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    measured = [r for r in report["rows"] if r.get("latency_ms")]
    threads = report["threads"]
    latency_png = stem.with_name(stem.name + "-latency.png")
    figure, axis = plt.subplots(figsize=(8, 0.5 + 0.45 * len(measured) * len(threads)))
    height = 0.8 / len(threads)
    for k, t in enumerate(threads):
        y = np.arange(len(measured)) + k * height
        p50 = [r["latency_ms"][t]["p50"] if t in r["latency_ms"] else np.nan for r in measured]
        p90 = [r["latency_ms"][t]["p90"] if t in r["latency_ms"] else np.nan for r in measured]
        axis.barh(y, p50, height, xerr=[np.zeros(len(p50)), np.subtract(p90, p50)], label=f"{t} thread(s)", capsize=2)
    axis.set_yticks(np.arange(len(measured)) + 0.4 - height / 2, [r["name"] for r in measured])
    axis.set_xlabel("latency of one slice, ms (bar p50, whisker p90)")
    axis.invert_yaxis()
    axis.legend()
    axis.set_title(f"saunet-bench {report['date']}: {report['machine']}", fontsize=8)
    figure.tight_layout()
    _save(figure, latency_png)

    scored = [r for r in report["rows"] if r.get("dice_per_patient")]
    dice_png = stem.with_name(stem.name + "-dice.png")
    figure, axis = plt.subplots(figsize=(max(6, 0.7 * len(report["patients"])), 4))
    for r in scored:
        values = [r["dice_per_patient"].get(p, np.nan) for p in report["patients"]]
        axis.plot(range(len(values)), values, marker="o", linestyle="none", label=r["name"], alpha=0.7)
    axis.set_xticks(range(len(report["patients"])), [p[5:12] for p in report["patients"]], rotation=45, fontsize=7)
    axis.set_ylabel("per-patient 3D Dice")
    axis.set_ylim(-0.02, 1.02)
    axis.legend(fontsize=7)
    figure.tight_layout()
    _save(figure, dice_png)
    return [latency_png, dice_png]


def _save(figure, path: Path) -> None:
    import matplotlib.pyplot as plt

    with atomic_path(path) as partial:
        figure.savefig(partial, format="png", dpi=110)
    plt.close(figure)
