"""The one table of export formats: it drives saunet-export's flags, file names and checks,
and the benchmark's rows (saunet-export makes the LiteRT ones; saunet-bench the ONNX ones)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Format:
    """An export format.

    Args:
        name: the format's name in reports and metadata.
        flag: saunet-export's option that selects it.
        suffix: appended to the model's stem to name the file.
        quantization: what is quantized, in words.
        integer_io: the model's input and output are int8 (the runtime quantizes the scan).
        needs_data: the export reads training slices (calibration or fine-tuning).
        engine: what runs the file: "litert" (a .tflite) or "onnxruntime" (a .onnx, made by
            saunet-bench for comparison; saunet-export has no flag for it).
    """

    name: str
    flag: str
    suffix: str
    quantization: str
    integer_io: bool
    needs_data: bool
    engine: str = "litert"


FORMATS: tuple[Format, ...] = (
    Format("float32", "--float32", "_float32.tflite", "none", False, False),
    Format("float16", "--float16", "_float16.tflite", "weights to float16", False, False),
    Format("dynamic", "--dynamic", "_dynamic.tflite", "weights int8, activations float at run time", False, False),
    Format(
        "int8-ptq", "--ptq", "_int8_ptq.tflite", "weights and activations int8, post-training calibration", True, True
    ),
    Format(
        "int8", "--int8", "_int8.tflite", "weights and activations int8, quantization-aware fine-tuning", True, True
    ),
    Format("onnx-float32", "", "_float32.onnx", "none (tf2onnx)", False, False, "onnxruntime"),
    Format(
        "onnx-int8",
        "",
        "_int8_qdq.onnx",
        "weights and activations int8, static QDQ calibration (onnxruntime.quantization)",
        False,
        True,
        "onnxruntime",
    ),
)
LITERT = tuple(f for f in FORMATS if f.engine == "litert")
BY_NAME = {f.name: f for f in FORMATS}


def table() -> str:
    """The formats saunet-export makes, as a Markdown table (for --help and the README)."""
    lines = ["| format | flag | file | quantization |", "|---|---|---|---|"]
    lines += [f"| {f.name} | `{f.flag}` | `<stem>{f.suffix}` | {f.quantization} |" for f in LITERT]
    return "\n".join(lines)
