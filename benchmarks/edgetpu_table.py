"""What the Edge TPU static check (saunet.quantize.edgetpu) says for both presets and the bundled model.

    python -m saunet.benchmarks.edgetpu_table [--input-size 128] [--out benchmarks/reports]

Each preset is built untrained at the input size and exported to int8 (post-training
calibration on random inputs): the ops, shapes and types the check reads are those of a
trained model of that preset; the values are not. The bundled model is checked as it is.
Writes <date>-edgetpu-table.json. A check against the published table, not a compile.
"""

from __future__ import annotations

import argparse
from datetime import date
from pathlib import Path

import numpy as np

import saunet.quantize  # noqa: F401  (Keras 2 before TensorFlow)
from saunet.benchmarks.report import write_json
from saunet.quantize.convert import convert
from saunet.quantize.edgetpu import check_flatbuffer, static_check
from saunet.quantize.formats import BY_NAME
from saunet.quantize.qat import without_dropblock
from saunet.runtime.models import BUNDLED_MODEL
from saunet.runtime.preprocess import Preprocessing
from saunet.runtime.spec import PRESETS, model_spec
from saunet.training.model import build_saunet


def preset_model(preset: str, input_size: int) -> bytes:
    """The preset as an int8 .tflite, the way saunet-export's --ptq makes it (random calibration)."""
    spec = model_spec(preset, Preprocessing(input_size=input_size))
    model = without_dropblock(build_saunet(spec), spec, batch_size=1)
    rng = np.random.default_rng(0)
    inputs = [rng.uniform(0, 1, model.input_shape).astype(np.float32) for _ in range(8)]
    return convert(model, BY_NAME["int8-ptq"], lambda: ([x] for x in inputs))


def brief(report: dict) -> dict:
    return {
        "ops_total": report["ops_total"],
        "ops_before_first_unsupported": report["ops_before_first_unsupported"],
        "unsupported": report["unsupported"],
        "notes": report["notes"],
        "ops": [o["op"] for o in report["ops"]],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input-size", type=int, default=128)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/reports"))
    args = parser.parse_args()
    checks = {
        f"preset {p}, {args.input_size}x{args.input_size}": check_flatbuffer(preset_model(p, args.input_size))
        for p in PRESETS
    }
    checks[f"bundled {BUNDLED_MODEL.name}"] = static_check(BUNDLED_MODEL)
    first = next(iter(checks.values()))
    report = {
        "date": date.today().isoformat(),
        "check": first["check"],
        "beyond_the_table": first["beyond_the_table"],
        "models": {name: brief(r) for name, r in checks.items()},
    }
    target = args.out / f"{report['date']}-edgetpu-table.json"
    write_json(target, report)
    for name, r in report["models"].items():
        print(
            f"{name}: {r['ops_before_first_unsupported']} of {r['ops_total']} ops before the first the table "
            f"does not allow; not allowed: {r['unsupported'] or 'none'}; notes: {r['notes'] or 'none'}"
        )
    print(f"report: {target}")


if __name__ == "__main__":
    main()
