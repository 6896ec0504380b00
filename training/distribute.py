"""Choosing a tf.distribute strategy; the training code is the same under every one."""

from __future__ import annotations

import json
import os

import tensorflow as tf

from saunet.training.config import STRATEGIES  # noqa: F401


def make_strategy(name: str = "auto") -> tf.distribute.Strategy:
    """The strategy for `--strategy NAME`.

    auto: mirrored over the GPUs when TensorFlow sees more than one, else the default (one
    device: the GPU if there is one, else the CPU). mirrored: over all visible GPUs, or all
    logical CPU devices when there is no GPU. multi-worker: synchronous data parallelism over
    the machines listed in TF_CONFIG. Must be called before any other TensorFlow op.
    """
    if name not in STRATEGIES:
        raise ValueError(f"unknown strategy {name!r}; choose one of {', '.join(STRATEGIES)}")
    if name == "multi-worker":
        if "TF_CONFIG" not in os.environ:
            raise ValueError("--strategy multi-worker needs TF_CONFIG describing the cluster and this worker's task")
        return tf.distribute.MultiWorkerMirroredStrategy()  # before anything else touches the runtime
    gpus = tf.config.list_logical_devices("GPU")
    if name == "auto":
        name = "mirrored" if len(gpus) > 1 else "default"
    if name == "default":
        return tf.distribute.get_strategy()
    devices = gpus or tf.config.list_logical_devices("CPU")
    return tf.distribute.MirroredStrategy([d.name for d in devices])


def is_chief() -> bool:
    """Whether this process writes the run folder: always, except non-chief multi-workers."""
    config = json.loads(os.environ.get("TF_CONFIG", "{}"))
    task, cluster = config.get("task", {}), config.get("cluster", {})
    if not task or task.get("type") == "chief":
        return True
    return "chief" not in cluster and task.get("type") == "worker" and task.get("index", 0) == 0


def describe(strategy: tf.distribute.Strategy) -> str:
    """A short description for the run summary, e.g. 'MirroredStrategy, 2 replicas'."""
    names = {"CollectiveAllReduceStrategy": "MultiWorkerMirroredStrategy", "_DefaultDistributionStrategy": "one device"}
    name = type(strategy).__name__
    return f"{names.get(name, name)}, {strategy.num_replicas_in_sync} replica(s)"
