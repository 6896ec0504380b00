"""Parts of saunet-bench on tiny models, without a trained run: the floor's layers, ONNX int8, the CPU's ISA."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import saunet.quantize  # noqa: F401  (Keras 2 before TensorFlow)
from saunet.benchmarks.floor import conv_layers
from saunet.benchmarks.machine import isa_features
from saunet.quantize.qat import without_dropblock
from saunet.runtime.preprocess import Preprocessing
from saunet.runtime.spec import model_spec
from saunet.training.keras import keras
from saunet.training.model import build_saunet


def test_floor_has_one_layer_model_per_distinct_convolution_counted_as_often_as_it_occurs() -> None:
    spec = model_spec("seed", Preprocessing(input_size=32))
    model = without_dropblock(build_saunet(spec), spec, batch_size=1)
    convolutions = [
        layer for layer in model.layers if isinstance(layer, (keras.layers.Conv2D, keras.layers.Conv2DTranspose))
    ]
    layers, counts = conv_layers(model)
    assert sum(counts) == len(convolutions) and len(layers) < len(convolutions), "repeated shapes are timed once"
    x = np.random.default_rng(0).uniform(0, 1, (1, 32, 32, 3)).astype(np.float32)
    first = next(layer for layer in model.layers if layer.name == "down1_a_conv")
    np.testing.assert_allclose(layers[0](x).numpy(), first(x).numpy(), atol=1e-5), "same weights, no activation"
    for single in layers:
        (layer,) = [la for la in single.layers if not isinstance(la, keras.layers.InputLayer)]
        assert single.input_shape[0] == 1 and layer.get_config()["activation"] == "linear"


def test_onnx_int8_is_qdq_and_close_to_the_float_model(tmp_path: Path) -> None:
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("tf2onnx")
    from saunet.benchmarks.onnx_models import export_float, quantize_int8

    inputs = keras.Input((16, 16, 3), batch_size=1)
    hidden = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(inputs)
    model = keras.Model(inputs, keras.layers.Conv2D(1, 1, activation="sigmoid")(hidden))
    rng = np.random.default_rng(0)
    calibration = [rng.uniform(0, 1, (1, 16, 16, 3)).astype(np.float32) for _ in range(16)]
    float_path = export_float(model, tmp_path / "m_float32.onnx")
    int8_path = quantize_int8(float_path, tmp_path / "m_int8_qdq.onnx", calibration)
    ops = {node.op_type for node in onnx.load(str(int8_path)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    x = calibration[0]
    expected = model(x).numpy()
    for path in (float_path, int8_path):
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        (got,) = session.run(None, {session.get_inputs()[0].name: x})
        np.testing.assert_allclose(got, expected, atol=1e-5 if path == float_path else 0.02)
    assert not list(tmp_path.glob(".*partial*")), "no partial file left behind"


def test_isa_features_read_the_cpu_flags() -> None:
    assert isa_features({"avx2", "avx512_vnni", "amx_tile", "amx_int8", "sse4_2"}) == {
        "AVX2": True,
        "AVX-512 VNNI": True,
        "AMX": True,
    }
    assert isa_features({"avx2", "avx_vnni", "amx_tile"}) == {"AVX2": True, "AVX-512 VNNI": False, "AMX": False}
    assert isa_features(set()) == {"AVX2": False, "AVX-512 VNNI": False, "AMX": False}


def test_floor_ratio_is_latency_over_the_rows_own_floor() -> None:
    from saunet.benchmarks.bench import Row, Settings
    from saunet.benchmarks.report import build_report

    row = Row("tflite int8", "tflite", None, floor="litert int8")
    row.results = {1: {"latency_ms": [3.0, 3.0, 3.0], "backend": "x", "peak_rss_mb": 1.0}}
    floors = {
        "litert int8": {
            1: {
                "chained_ms": [2.5, 2.5, 2.5],
                "backend": "x",
                "peak_rss_mb": 1.0,
                "layers": [{"model": "a", "count": 2, "p50_ms": 0.5}, {"model": "b", "count": 1, "p50_ms": 1.0}],
            }
        }
    }
    report = build_report([row], floors, {}, 1.0, [1], ["p"], 1, Path("run"), Settings(), 0.0, load=(2.5, 2.75))
    (summary,) = report["rows"]
    assert summary["floor_ratio"] == {1: pytest.approx(1.5)}
    floor = report["floors"]["litert int8"]
    assert floor["p50_ms"] == {1: 2.0} and floor["chained_p50_ms"] == {1: 2.5}, "layer medians times their counts"
    assert floor["convolutions"] == 3 and floor["shapes"] == 2
    goal = next(g for g in report["goals"] if "floor" in g["goal"])
    assert goal["value"] == pytest.approx(1.5) and goal["met"] is False
    assert "| tflite int8 | ok |" in report["markdown"] and "1.50" in report["markdown"]
    assert "Load average (1 minute) when the measurements began: 2.50, when they ended: 2.75" in report["markdown"]


def test_ensemble_engine_times_every_call_and_averages_like_saunet_run(real_slices: Path, tmp_path: Path) -> None:
    from saunet.benchmarks.bench import ensemble_of
    from saunet.benchmarks.engines import MirroredTFLiteEngine, TFLiteEngine
    from saunet.runtime.ensemble import combined
    from saunet.runtime.models import BUNDLED_MODEL
    from saunet.runtime.preprocess import read_image
    from saunet.runtime.segmenter import Segmenter

    folder = tmp_path / "ensemble"
    folder.mkdir()
    for name in ("a.tflite", "b.tflite", "c.tflite"):
        (folder / name).write_bytes(BUNDLED_MODEL.read_bytes())
    files, threshold = ensemble_of((folder,))
    assert [f.name for f in files] == ["a.tflite", "b.tflite", "c.tflite"] and threshold is None
    with pytest.raises(ValueError, match="not found"):
        ensemble_of((tmp_path / "absent.tflite",))
    (folder / "ensemble.json").write_text('{"models": ["c.tflite", "a.tflite"], "tta": false, "threshold": 0.4}')
    described = ensemble_of((folder,))
    assert ([f.name for f in described[0]], described[1]) == (["c.tflite", "a.tflite"], 0.4)
    scan = read_image(sorted(real_slices.glob("*_16.png"))[0])
    spec = Preprocessing()
    plain, mirrored = TFLiteEngine(files, 1, None, spec), MirroredTFLiteEngine(files, 1, None, spec)
    assert len(plain.call(plain.prepare(scan))) == 3 and len(mirrored.call(mirrored.prepare(scan))) == 6
    single = Segmenter(BUNDLED_MODEL, threads=1)
    np.testing.assert_allclose(plain.probabilities(scan), single.predict(scan).probability, atol=1e-6)
    np.testing.assert_allclose(mirrored.probabilities(scan), combined([single], tta=True)(scan).probability, atol=1e-6)


def test_ensemble_latency_goal_reads_a_whole_slice_at_one_thread() -> None:
    from saunet.benchmarks.report import ENSEMBLE_ROW, goals

    name = f"{ENSEMBLE_ROW} of 5 --tta"
    rows = {name: {"latency_ms": {1: {"p50": 20.0}}, "slice_ms": {1: {"p50": 59.0}, 2: {"p50": 70.0}}}}
    (goal,) = [g for g in goals(rows, [1, 2]) if ENSEMBLE_ROW in g["goal"]]
    assert goal["value"] == 59.0 and goal["met"] is True
    rows[name]["slice_ms"][1]["p50"] = 61.0
    (goal,) = [g for g in goals(rows, [1, 2]) if ENSEMBLE_ROW in g["goal"]]
    assert goal["met"] is False


def test_a_scripts_report_opens_with_date_and_machine_and_is_written_whole(tmp_path: Path) -> None:
    import json
    from datetime import date

    from saunet.benchmarks import machine
    from saunet.benchmarks.report import stamped, write_json

    path = tmp_path / "reports" / "r.json"
    write_json(path, stamped({"model": "m.tflite", "mean": {"dice": 0.5}}))
    text = path.read_text()
    assert list(json.loads(text).items()) == [
        ("date", date.today().isoformat()),
        ("machine", machine.describe()),
        ("model", "m.tflite"),
        ("mean", {"dice": 0.5}),
    ]
    assert text.endswith("}\n") and '\n  "model"' in text, "indented, one final newline, as the reports so far"
    assert [p.name for p in path.parent.iterdir()] == ["r.json"], "no partial file left behind"
