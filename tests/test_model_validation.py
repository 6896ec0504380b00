"""Foreign, crafted and broken models and delegates: one line naming the file, never a traceback."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from saunet.runtime.interpreter import IO_DTYPES, check_tensors
from saunet.runtime.metadata import ModelError, check_preprocessing, read_metadata

from conftest import BLOCK_TENSORFLOW, ROOT

BUNDLED = ROOT / "runtime" / "models" / "saunet_int8.tflite"
#: Code that makes every LiteRT interpreter package unimportable (TensorFlow stays importable).
BLOCK_LITERT = """
import importlib.abc, sys
class BlockLiteRT(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("ai_edge_litert", "tflite_runtime"):
            raise ImportError("blocked: " + name)
sys.meta_path.insert(0, BlockLiteRT())
"""


def saunet_run(*args: str, block: str = BLOCK_TENSORFLOW) -> subprocess.CompletedProcess:
    code = block + "from saunet.runtime.cli import main\nmain()"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=300)


def one_error_line(result: subprocess.CompletedProcess) -> str:
    """The single line of stderr, asserting there is no traceback or second line (LiteRT's own
    start-up line included: saunet silences it)."""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def tensor(shape, dtype=np.int8, scales=(1 / 256,), zeros=(-128,)) -> dict:
    return {
        "shape": np.array(shape),
        "dtype": dtype,
        "quantization_parameters": {"scales": np.array(scales, np.float32), "zero_points": np.array(zeros)},
    }


GOOD_IN, GOOD_OUT = tensor((1, 64, 64, 3), scales=(1 / 255,)), tensor((1, 64, 64, 1))


def test_the_bundled_models_tensors_and_metadata_pass() -> None:
    check_preprocessing(BUNDLED, read_metadata(BUNDLED))
    check_tensors("m", [GOOD_IN], [GOOD_OUT], 64)
    check_tensors("m", [tensor((1, 64, 64, 3), np.float32, (), ())], [tensor((1, 64, 64, 1), np.float32, (), ())], 64)
    check_tensors("m", [tensor((1, 64, 64, 3), np.uint8, (1 / 255,), (0,))], [GOOD_OUT], 64)


@pytest.mark.parametrize(
    "inputs, outputs, expected",
    [
        ([GOOD_IN, GOOD_IN], [GOOD_OUT], "2 input(s) and 1 output(s)"),
        ([GOOD_IN], [GOOD_OUT, GOOD_OUT], "1 input(s) and 2 output(s)"),
        ([GOOD_IN], [], "1 input(s) and 0 output(s)"),
        ([tensor((1, 64, 64))], [GOOD_OUT], "input shape 1x64x64 is not the 1x64x64x3 image"),
        ([tensor((1, 64, 64, 1))], [GOOD_OUT], "input shape 1x64x64x1 is not the 1x64x64x3 image"),
        ([tensor((1, 64, 32, 3))], [GOOD_OUT], "input shape 1x64x32x3"),
        ([tensor((2, 64, 64, 3))], [GOOD_OUT], "input shape 2x64x64x3"),
        ([tensor((1, 128, 128, 3))], [GOOD_OUT], "input shape 1x128x128x3 is not the 1x64x64x3 image its metadata"),
        ([GOOD_IN], [tensor((1, 64, 64, 2))], "output shape 1x64x64x2 is not the 1x64x64x1 mask"),
        ([GOOD_IN], [tensor((1, 10))], "output shape 1x10"),
        ([tensor((1, 64, 64, 3), np.int16)], [GOOD_OUT], "input type int16 is not one of int8, uint8, float32"),
        ([GOOD_IN], [tensor((1, 64, 64, 1), np.float16, (), ())], "output type float16"),
        ([tensor((1, 64, 64, 3), scales=(0.0,))], [GOOD_OUT], "input is int8 with quantization scale 0.0"),
        ([tensor((1, 64, 64, 3), scales=(math.nan,))], [GOOD_OUT], "input is int8 with quantization scale nan"),
        ([GOOD_IN], [tensor((1, 64, 64, 1), scales=(-0.1,))], "output is int8 with quantization scale"),
        ([GOOD_IN], [tensor((1, 64, 64, 1), np.uint8, (0.1,), (300,))], "output is uint8 with zero point 300 outside"),
        ([tensor((1, 64, 64, 3), scales=(), zeros=())], [GOOD_OUT], "input is int8 with 0 quantization scale(s)"),
        ([tensor((1, 64, 64, 3), scales=(0.1, 0.2, 0.3), zeros=(0, 0, 0))], [GOOD_OUT], "3 quantization scale(s)"),
    ],
)
def test_tensors_that_are_not_one_image_in_one_mask_out_are_refused(inputs, outputs, expected) -> None:
    with pytest.raises(ModelError, match="^m: ") as error:
        check_tensors("m", inputs, outputs, 64)
    assert expected in str(error.value)
    assert IO_DTYPES == ("int8", "uint8", "float32")


@pytest.mark.parametrize(
    "change, expected",
    [
        ({"threshold": math.nan}, "threshold nan is not a number from 0 to 1"),
        ({"threshold": 1.5}, "threshold 1.5"),
        ({"threshold": -0.1}, "threshold -0.1"),
        ({"threshold": "0.5"}, "threshold '0.5'"),
        ({"threshold": True}, "threshold True"),
        ({"input_size": -128}, "input_size -128 is not a whole number"),
        ({"input_size": 0}, "input_size 0"),
        ({"input_size": 128.0}, "input_size 128.0"),
        ({"input_size": 10**6}, "input_size 1000000"),
        ({"scale": 0}, "scale 0 is not a positive finite number"),
        ({"scale": math.inf}, "scale inf"),
        ({"scale": None}, "scale None"),
        ({"channels": ["FLAIR"]}, "channels ['FLAIR'] is not a list of three names"),
        ({"channels": "abc"}, "channels 'abc'"),
        ({"normalise": "per-volume-zscore"}, "normalisation 'per-volume-zscore' is unknown"),
        ({"normalise": ["none"]}, "normalisation ['none'] is unknown"),
        ({"bit_depth": 12}, "unknown key 'bit_depth'"),
    ],
)
def test_preprocessing_metadata_out_of_type_or_range_is_refused(change: dict, expected: str) -> None:
    metadata = read_metadata(BUNDLED)
    metadata["preprocessing"].update(change)
    with pytest.raises(ModelError, match="^m: its preprocessing metadata") as error:
        check_preprocessing("m", metadata)
    assert expected in str(error.value)


def test_metadata_without_preprocessing_or_not_an_object_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="no preprocessing section"):
        check_preprocessing("m", {"preprocessing": [1, 2]})
    with pytest.raises(ModelError, match="no preprocessing section"):
        check_preprocessing("m", {})
    pytest.importorskip("tensorflow")
    from saunet.quantize.tflite_metadata import embed

    crafted = tmp_path / "list.tflite"
    crafted.write_bytes(embed(BUNDLED.read_bytes(), [1, 2, 3]))
    with pytest.raises(ModelError, match="its saunet metadata is a JSON list, not an object"):
        read_metadata(crafted)


@pytest.fixture(scope="module")
def crafted_models(tmp_path_factory) -> dict[str, Path]:
    """Foreign .tflite files carrying the bundled model's saunet metadata (or bent copies of it)."""
    pytest.importorskip("tensorflow")
    import tensorflow as tf

    import saunet.quantize  # noqa: F401  (Keras 2 before TensorFlow)
    from saunet.quantize.tflite_metadata import embed
    from saunet.training.keras import keras

    metadata = read_metadata(BUNDLED)
    size = metadata["preprocessing"]["input_size"]
    image = keras.Input((size, size, 3), batch_size=1)
    other = keras.Input((size, size, 3), batch_size=1)
    conv = keras.layers.Conv2D(1, 1, activation="sigmoid")
    models = {
        "two_inputs": keras.Model([image, other], conv(keras.layers.Add()([image, other]))),
        "two_outputs": keras.Model(image, [conv(image), keras.layers.Conv2D(1, 1)(image)]),
        "classifier": keras.Model(image, keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(image))),
    }
    grey = keras.Input((size, size, 1), batch_size=1)
    models["grey_input"] = keras.Model(grey, keras.layers.Conv2D(1, 1)(grey))
    folder = tmp_path_factory.mktemp("crafted")
    paths = {}
    for name, model in models.items():
        flatbuffer = tf.lite.TFLiteConverter.from_keras_model(model).convert()
        paths[name] = folder / f"{name}.tflite"
        paths[name].write_bytes(embed(flatbuffer, metadata))
    for name, change in {
        "nan_threshold": {"threshold": math.nan},
        "negative_size": {"input_size": -1},
        "unknown_step": {"bias_field": "n4"},
    }.items():
        bent = {**metadata, "preprocessing": {**metadata["preprocessing"], **change}}
        paths[name] = folder / f"{name}.tflite"
        paths[name].write_bytes(embed(BUNDLED.read_bytes(), bent))
    return paths


@pytest.mark.parametrize(
    "name, expected",
    [
        ("two_inputs", "2 input(s) and 1 output(s); a saunet model has one image in and one mask out"),
        ("two_outputs", "1 input(s) and 2 output(s)"),
        ("classifier", "output shape 1x2 is not the"),
        ("grey_input", "input shape 1x128x128x1 is not the 1x128x128x3 image"),
        ("nan_threshold", "threshold nan is not a number from 0 to 1"),
        ("negative_size", "input_size -1 is not a whole number"),
        ("unknown_step", "unknown key 'bias_field'"),
    ],
)
def test_saunet_run_refuses_a_crafted_model_in_one_line_and_writes_nothing(
    crafted_models: dict[str, Path], real_slices: Path, tmp_path: Path, name: str, expected: str
) -> None:
    model = crafted_models[name]
    result = saunet_run(str(real_slices), "--model", str(model), "--out", str(tmp_path / "out"))
    assert result.returncode == 1
    line = one_error_line(result)
    assert line.startswith(f"error: {model}: ") and expected in line, line
    assert not (tmp_path / "out").exists()


def test_no_interpreter_is_one_line_saying_what_to_install(real_slices: Path, tmp_path: Path) -> None:
    """TensorFlow alone (the train extra without LiteRT) is not an interpreter: tf.lite.Interpreter is gone."""
    result = saunet_run(str(real_slices), "--out", str(tmp_path / "out"), block=BLOCK_LITERT)
    assert result.returncode == 1
    line = one_error_line(result)
    assert "no LiteRT interpreter can be loaded (tried ai-edge-litert, tflite-runtime)" in line
    assert "pip install ai-edge-litert" in line


def not_a_delegate() -> Path:
    """A real shared library that is not a TFLite delegate: numpy's own C extension."""
    import numpy

    return next(Path(numpy.__file__).parent.glob("_core/_multiarray_umath*.so"), None) or next(
        Path(numpy.__file__).parent.glob("core/_multiarray_umath*.so")
    )


@pytest.fixture(scope="module")
def failing_delegate(tmp_path_factory) -> Path:
    """A library with the external delegate interface whose create function fails (returns NULL)."""
    folder = tmp_path_factory.mktemp("delegate")
    source = folder / "failing.c"
    source.write_text("""
typedef void (*report_t)(const char *);
void *tflite_plugin_create_delegate(char **keys, char **values, int n, report_t report) {
    report("this delegate always fails");
    return 0;
}
void tflite_plugin_destroy_delegate(void *delegate) {}
""")
    library = folder / "libfailing.so"
    try:
        built = subprocess.run(["cc", "-shared", "-fPIC", "-o", str(library), str(source)], capture_output=True)
    except FileNotFoundError:
        pytest.skip("no C compiler to build a failing delegate")
    if built.returncode:
        pytest.skip(f"cannot build a failing delegate: {built.stderr.decode()[:200]}")
    return library


@pytest.mark.parametrize("kind", ["not_a_delegate", "failing", "not_a_library"])
def test_a_delegate_that_does_not_load_is_one_line_and_cpu_fallback_runs(
    kind: str, failing_delegate: Path, real_slices: Path, tmp_path: Path
) -> None:
    scan = real_slices / "TCGA_CS_6186_20000601_16.png"
    if kind == "not_a_library":
        library = tmp_path / "libtext.so"
        library.write_text("not an ELF file")
    else:
        library = not_a_delegate() if kind == "not_a_delegate" else failing_delegate
    expected = {
        "not_a_delegate": "not a TFLite delegate library (it lacks tflite_plugin_create_delegate)",
        "failing": "delegate failed to load (",
        "not_a_library": "delegate library cannot be loaded (",
    }[kind]
    refused = saunet_run(str(scan), "--delegate", str(library), "--out", str(tmp_path / "a"))
    assert refused.returncode == 1
    line = one_error_line(refused)
    assert line.startswith(f"error: {library}: {expected}"), line
    if kind == "failing":
        assert "this delegate always fails" in line

    fallback = saunet_run(str(scan), "--delegate", str(library), "--cpu-fallback", "--out", str(tmp_path / "b"))
    assert fallback.returncode == 0, fallback.stderr
    assert "Traceback" not in fallback.stderr and "Exception ignored" not in fallback.stderr, fallback.stderr
    assert "running on the CPU instead (--cpu-fallback)" in fallback.stderr
    assert (tmp_path / "b" / f"{scan.stem}_pred.png").is_file()
