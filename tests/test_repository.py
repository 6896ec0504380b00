"""The repository stays lean: weights live in git only for the bundled models.

A clone carries every tracked file forever (git history keeps what the tree drops), so a large
file may be tracked only under runtime/models/ (the bundled models) or as the resumable
`last.keras` of a training run still in progress (checkpoints/RUN/, removed when it finishes).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path, PurePosixPath

import pytest

from conftest import ROOT

LIMIT = 5 * 1024 * 1024
BUNDLED = PurePosixPath("runtime/models")


def tracked_sizes(root: Path) -> dict[str, int]:
    """Size in bytes of every file git tracks under root, as staged (what a commit would hold)."""
    stage = subprocess.run(["git", "ls-files", "--stage", "-z"], cwd=root, capture_output=True, check=True).stdout
    entries = [line.split("\t", 1) for line in stage.decode().split("\0") if line]
    blobs = [(meta.split()[1], path) for meta, path in entries if not meta.startswith("160000")]  # no submodules
    if not blobs:
        return {}
    checked = subprocess.run(
        ["git", "cat-file", "--batch-check=%(objectsize)"],
        cwd=root,
        capture_output=True,
        check=True,
        input="\n".join(sha for sha, _ in blobs).encode() + b"\n",
    ).stdout
    return {path: int(size) for (_, path), size in zip(blobs, checked.decode().split())}


def unfinished(run: Path) -> bool:
    """A run is unfinished when its state.json's last epoch is below the epochs its config.json asks for."""
    try:
        state = json.loads((run / "state.json").read_text())
        config = json.loads((run / "config.json").read_text())
        return int(state["epoch"]) < int(config["epochs"])
    except (OSError, ValueError, KeyError, TypeError):
        return False


def allowed(path: str, root: Path) -> bool:
    parts = PurePosixPath(path)
    if parts.is_relative_to(BUNDLED):
        return True
    return (
        len(parts.parts) >= 3  # checkpoints/RUN/last.keras, or a fold's: checkpoints/CV/foldI/last.keras
        and parts.parts[0] == "checkpoints"
        and parts.name == "last.keras"
        and unfinished(root / parts.parent)
    )


def git_checkout(root: Path) -> bool:
    if shutil.which("git") is None:
        return False
    top = subprocess.run(["git", "rev-parse", "--show-toplevel"], check=False, cwd=root, capture_output=True, text=True)
    return top.returncode == 0 and Path(top.stdout.strip()).resolve() == root.resolve()


def large_files(root: Path) -> list[str]:
    return sorted(
        f"{path} ({size / 1e6:.1f} MB)"
        for path, size in tracked_sizes(root).items()
        if size > LIMIT and not allowed(path, root)
    )


def test_no_large_file_is_tracked_outside_the_bundled_models() -> None:
    if not git_checkout(ROOT):
        pytest.skip("not a git checkout (an installed package or an unpacked sdist)")
    found = large_files(ROOT)
    assert not found, (
        "files over 5 MB tracked outside runtime/models/ (weights belong in git only for the "
        f"bundled models, or as an unfinished run's checkpoints/RUN/last.keras): {found}"
    )


def git(root: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=root, check=True, capture_output=True
    )


def test_the_check_flags_weights_of_a_finished_run_and_spares_an_unfinished_one(tmp_path: Path) -> None:
    """The rule itself, on a scratch repository: the same large last.keras is allowed only while its run runs."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    git(tmp_path, "init", "-q")
    big = b"\0" * (LIMIT + 1)
    for name in ("runtime/models/saunet_float.keras", "checkpoints/run/last.keras", "checkpoints/run/best.keras"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(big)
    (tmp_path / "checkpoints/run/config.json").write_text(json.dumps({"epochs": 50}))
    (tmp_path / "checkpoints/run/state.json").write_text(json.dumps({"epoch": 21}))
    (tmp_path / "small.txt").write_bytes(b"x" * LIMIT)
    git(tmp_path, "add", ".")
    assert [f.split(" ")[0] for f in large_files(tmp_path)] == ["checkpoints/run/best.keras"]

    (tmp_path / "checkpoints/run/state.json").write_text(json.dumps({"epoch": 50}))
    assert [f.split(" ")[0] for f in large_files(tmp_path)] == [
        "checkpoints/run/best.keras",
        "checkpoints/run/last.keras",
    ]


def test_every_module_imports() -> None:
    """A script no test runs (a benchmark, a bundler) still breaks here when an import it names moves."""
    import importlib
    import pkgutil

    import saunet.quantize  # noqa: F401  (Keras 2 before TensorFlow)

    for package in ("runtime", "training", "quantize", "benchmarks"):
        root = importlib.import_module(f"saunet.{package}")
        for module in pkgutil.walk_packages(root.__path__, prefix=f"saunet.{package}."):
            if not module.name.endswith("__main__"):  # runs its command when imported
                importlib.import_module(module.name)
