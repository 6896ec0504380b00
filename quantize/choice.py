"""Which int8 export a run bundles: the rule, fixed before any test patient is scored.

Of the int8 files whose mean per-patient Dice on the validation patients stayed within the
parity tolerance of the float model's, the one whose masks agree best with the float
model's, pixel for pixel. Agreement rather than Dice: the int8 file stands in for the float
model, and a Dice gain on ten patients is as likely to be luck as a drop. The test patients
play no part, so their figures stay a test. Reads saunet-export's `*_parity.json` reports
(json only: the model card uses this without TensorFlow).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from saunet.quantize.formats import BY_NAME


@dataclass(frozen=True)
class Choice:
    """The int8 export the rule picks.

    Args:
        format: its format's name (``int8`` or ``int8-ptq``).
        path: the file, beside the parity report that scored it (None in reports written before
            saunet-export recorded file names).
        agreement: fraction of validation pixels where its mask equals the float model's.
        dice_change: its mean per-patient Dice minus the float model's, on the validation patients.
        candidates: how many int8 files were within the tolerance.
    """

    format: str
    path: Path | None
    agreement: float
    dice_change: float
    candidates: int

    def reason(self) -> str:
        return (
            f"mask agreement {100 * self.agreement:.3f}% with the float model and Dice change "
            f"{self.dice_change:+.4f} on the validation patients, the best agreement of {self.candidates} int8 "
            "file(s) within the parity tolerance"
        )


def read_reports(folder: Path) -> list[tuple[Path, dict]]:
    """The parity reports in `folder` (a run's export/), each with its path."""
    reports = []
    for path in sorted(folder.glob("*_parity.json")):
        try:
            reports.append((path, json.loads(path.read_text())))
        except (OSError, ValueError) as error:
            raise ValueError(f"{path}: not a readable parity report ({error})") from error
    return reports


def pick_int8(reports: list[tuple[Path, dict]]) -> Choice | None:
    """Applies the rule to saunet-export's parity reports; None when no int8 file passed."""
    passed = []
    for path, report in reports:
        try:
            passed += [
                (row["mask_agreement"], name, row["dice_change"], path, report.get("files", {}).get(name))
                for name, row in report.get("exports", {}).items()
                if name in BY_NAME and BY_NAME[name].integer_io and row["passed"]
            ]
        except (AttributeError, KeyError, TypeError) as error:
            raise ValueError(f"{path}: not a saunet-export parity report ({error!r})") from error
    if not passed:
        return None
    agreement, name, change, report_path, file = max(passed, key=lambda entry: entry[:2])
    return Choice(name, report_path.with_name(file) if file else None, agreement, change, len(passed))
