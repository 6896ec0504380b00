"""The model card's metric tables, printed from a saunet-bench report (so no figure is copied by hand).

python -m saunet.benchmarks.card_tables benchmarks/reports/<date>-<machine>-<run>.json [--rows "keras float32 (TF CPU)" "tflite int8"]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from saunet.benchmarks.report import REFERENCE_ROW
from saunet.runtime.metrics import summary_rows

DEFAULT_ROWS = (REFERENCE_ROW, "tflite int8")


def tables(report: dict, names: tuple[str, ...]) -> str:
    rows = {r["name"]: r for r in report["rows"]}
    chosen = [rows[n] for n in names]

    def fmt(value) -> str:
        return "n/a" if value is None else f"{value:.3f}"

    columns = [summary_rows(r["scores"], fmt) for r in chosen]
    lines = ["| metric | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for i, (label, _) in enumerate(columns[0]):
        lines.append(f"| {label} | " + " | ".join(c[i][1] for c in columns) + " |")
    patients = [p["patient"] for p in chosen[0]["scores"]["per_patient"]]
    lines += [
        "",
        "| patient | slices | tumour voxels | " + " | ".join(f"{n}: Dice (largest component)" for n in names) + " |",
        "|---|---|---|" + "---|" * len(names),
    ]
    by_patient = [{p["patient"]: p for p in r["scores"]["per_patient"]} for r in chosen]
    for patient in patients:
        first = by_patient[0][patient]
        cells = [f"{b[patient]['dice_3d']:.3f} ({b[patient]['dice_3d_lcc']:.3f})" for b in by_patient]
        lines.append(f"| {patient} | {first['slices']} | {first['tumour_voxels_true']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", type=Path)
    parser.add_argument("--rows", nargs="+", default=list(DEFAULT_ROWS))
    args = parser.parse_args()
    print(tables(json.loads(args.report.read_text()), tuple(args.rows)))


if __name__ == "__main__":
    main()
