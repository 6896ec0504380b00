"""The same training code under tf.distribute: mirrored over two devices, and multi-worker."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

from conftest import TINY_TRAINING, run_python

TINY = [*TINY_TRAINING, "--epochs", "1"]


def test_mirrored_over_two_logical_cpus(dataset: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    result = run_python(f"""
import saunet.training
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from saunet.training.train import TrainConfig, train
summary = train(TrainConfig(data={str(dataset)!r}, out={str(run)!r}, strategy="mirrored", epochs=1,
                            input_size=32, batch_size=8, split=(0.6, 0.2, 0.2)))
print("STRATEGY", summary["strategy"])
""")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "STRATEGY MirroredStrategy, 2 replica(s)" in result.stdout
    assert json.loads((run / "state.json").read_text())["epoch"] == 1


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_multi_worker_as_two_local_processes(dataset: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    workers = [f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"]
    processes = []
    for index in range(2):
        config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
        env = {**os.environ, "TF_CONFIG": json.dumps(config)}
        processes.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "saunet.training",
                    "train",
                    "--data",
                    str(dataset),
                    "--out",
                    str(run),
                    "--strategy",
                    "multi-worker",
                    *TINY,
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=env,
            )
        )
    outputs = [p.communicate(timeout=600) for p in processes]
    for process, (_, err) in zip(processes, outputs):
        assert process.returncode == 0, err[-3000:]
    assert "MultiWorkerMirroredStrategy, 2 replica(s)" in outputs[0][0]
    assert json.loads((run / "state.json").read_text())["epoch"] == 1
    assert (run / "best.keras").is_file()
