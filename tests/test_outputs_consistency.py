"""saunet-run's output folder stays consistent under failed writes, a full disk, an unwritable
folder and signals: no partial file, no mask without its overlay, no stale results.json."""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from saunet.runtime import cli, outputs
from saunet.runtime.files import OutputError, atomic_path, exit_cleanly_on_signals
from saunet.runtime.outputs import prepare_output_folder, write_outputs, write_results

from conftest import BLOCK_TENSORFLOW


def scans(real_slices: Path) -> list[Path]:
    return sorted(p for p in real_slices.glob("*.png") if not p.stem.endswith("_mask"))


def leftovers(folder: Path) -> list[str]:
    """Hidden or partial files: none may survive a run, whatever happened to it."""
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".") or "partial" in p.name)


def pairs_are_whole(folder: Path) -> tuple[set[str], set[str]]:
    """(stems with both PNGs, stems with only one): the second must always be empty."""
    masks = {p.name.removesuffix("_pred.png") for p in folder.glob("*_pred.png")}
    overlays = {p.name.removesuffix("_overlay.png") for p in folder.glob("*_overlay.png")}
    return masks & overlays, masks ^ overlays


def failing_png_encoder(monkeypatch: pytest.MonkeyPatch, fail_on: set[int]) -> list[str]:
    """Makes the PNG encoder write half a file and then hit a full disk on the given calls (0-based)."""
    Image.init()  # plugins register lazily
    real = Image.SAVE["PNG"]
    calls: list[str] = []

    def encoder(image, fp, filename, *args, **kwargs):
        calls.append(str(filename))
        if len(calls) - 1 in fail_on:
            fp.write(b"\x89PNG\r\n\x1a\n" + bytes(1000))  # half a file on disk, then the disk is full
            fp.flush()
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(image, fp, filename, *args, **kwargs)

    monkeypatch.setitem(Image.SAVE, "PNG", encoder)
    return calls


def test_a_scan_whose_overlay_fails_keeps_neither_file_nor_an_earlier_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pixels = np.full((16, 16, 3), 90, np.uint8)
    mask = np.zeros((16, 16), np.uint8)
    mask_file, overlay_file = tmp_path / "a_pred.png", tmp_path / "a_overlay.png"
    mask_file.write_bytes(b"an earlier run's mask")
    overlay_file.write_bytes(b"an earlier run's overlay")
    failing_png_encoder(monkeypatch, fail_on={1})  # the mask goes through, the overlay fails
    with pytest.raises(ValueError, match=f"^{overlay_file}: cannot be written \\(No space left on device\\)$"):
        write_outputs(pixels, mask, mask_file, overlay_file)
    assert list(tmp_path.iterdir()) == [], "neither this run's nor an earlier run's pair may stay"


def test_atomic_path_leaves_the_old_file_and_no_partial_when_the_write_fails(tmp_path: Path) -> None:
    target = tmp_path / "results.json"
    target.write_text("old")
    with pytest.raises(OSError), atomic_path(target) as partial:
        partial.write_text("half")
        raise OSError(errno.ENOSPC, "No space left on device")
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["results.json"]


def test_two_processes_writing_one_file_never_share_a_partial_file(tmp_path: Path) -> None:
    """Two saunet-run commands into one folder: each write is whole, whichever lands last."""
    target = tmp_path / "results.json"
    with atomic_path(target) as partial:
        partial.write_text("this process")
        other = subprocess.run(
            [
                sys.executable,
                "-c",
                "import sys; from saunet.runtime.files import write_text; write_text(sys.argv[1], 'other process')",
                str(target),
            ],
            capture_output=True,
            text=True,
        )
        assert other.returncode == 0, other.stderr
        assert partial.read_text() == "this process", "the other process wrote into this one's partial file"
    assert target.read_text() == "this process" and [p.name for p in tmp_path.iterdir()] == ["results.json"]


def test_saunet_run_with_a_write_failing_halfway_keeps_the_folder_consistent(
    real_slices: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fault injection: the second scan's overlay hits a full disk half-way through its PNG."""
    batch = scans(real_slices)[:4]
    out = tmp_path / "out"
    out.mkdir()
    (out / "results.json").write_text('{"results": ["an earlier run"]}')
    (out / f"{batch[1].stem}_pred.png").write_bytes(b"an earlier run's mask of the failing scan")
    calls = failing_png_encoder(monkeypatch, fail_on={3})  # mask 1, overlay 1, mask 2, OVERLAY 2, ...
    result = CliRunner().invoke(cli.main, [*map(str, batch), "--out", str(out), "--threads", "1"])
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    errors = [line for line in result.output.splitlines() if line.startswith("error: ")]
    assert errors == [f"error: {out / batch[1].stem}_overlay.png: cannot be written (No space left on device)"]
    assert len(calls) == 8
    assert leftovers(out) == []
    whole, broken = pairs_are_whole(out)
    assert whole == {batch[0].stem, batch[2].stem, batch[3].stem} and broken == set()
    report = json.loads((out / "results.json").read_text())
    assert [r["input"] for r in report["results"]] == list(map(str, batch))
    assert "No space left on device" in report["results"][1]["error"] and "mask" not in report["results"][1]
    assert all(Path(r["mask"]).is_file() for i, r in enumerate(report["results"]) if i != 1)


def test_a_full_disk_at_results_json_is_one_line_and_leaves_no_partial(
    real_slices: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out"

    def full(path, text):
        with atomic_path(path) as partial:
            partial.write_text(text[:100])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(outputs, "write_text", full)
    result = CliRunner().invoke(cli.main, [str(scans(real_slices)[0]), "--out", str(out)])
    assert result.exit_code == 1
    assert (
        result.output.strip().splitlines()[-1]
        == f"error: {out / 'results.json'}: cannot be written (No space left on device)"
    )
    assert not (out / "results.json").exists() and leftovers(out) == []


def test_results_that_json_cannot_store_are_refused_not_written_as_invalid_json(tmp_path: Path) -> None:
    with pytest.raises(OutputError, match="results.json: not written: the results hold a value JSON cannot store"):
        write_results(tmp_path, {"threshold": float("nan")})
    assert list(tmp_path.iterdir()) == []


def immutable(folder: Path) -> bool:
    """Makes `folder` immutable (chattr +i), the one way to make a folder unwritable even for root."""
    if not shutil.which("chattr"):
        return False
    return subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode == 0


def test_an_unwritable_output_folder_is_one_line_before_any_scan(real_slices: Path, tmp_path: Path) -> None:
    out = tmp_path / "locked"
    out.mkdir()
    (out / "results.json").write_text("{}")
    if os.geteuid() != 0:
        out.chmod(0o500)
    elif not immutable(out):
        pytest.skip("cannot make a folder unwritable here (root, and no chattr +i)")
    try:
        code = BLOCK_TENSORFLOW + "from saunet.runtime.cli import main\nmain()"
        result = subprocess.run(
            [sys.executable, "-c", code, str(real_slices), "--out", str(out)],
            capture_output=True,
            text=True,
            timeout=300,
        )
    finally:
        subprocess.run(["chattr", "-i", str(out)], capture_output=True)
        out.chmod(0o700)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {out}: cannot write in the output folder ("), lines
    assert sorted(p.name for p in out.iterdir()) == ["results.json"]


def test_prepare_output_folder_removes_a_stale_results_json(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "results.json").write_text("{}")
    prepare_output_folder(out)
    assert list(out.iterdir()) == []
    (out / "results.json").unlink(missing_ok=True)
    (out / "results.json").mkdir()
    with pytest.raises(OutputError, match="results.json: is a folder"):
        prepare_output_folder(out)


@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_mid_batch_leaves_whole_pairs_no_partial_and_no_stale_results(
    real_slices: Path, tmp_path: Path, signum: int, code: int
) -> None:
    batch = tmp_path / "batch"
    batch.mkdir()
    for copy in range(150):
        for scan in scans(real_slices):
            os.link(scan, batch / f"{copy:03d}_{scan.name}")
    out = tmp_path / "out"
    out.mkdir()
    (out / "results.json").write_text('{"results": ["an earlier run, about other files"]}')
    code_text = BLOCK_TENSORFLOW + "from saunet.runtime.cli import main\nmain()"
    process = subprocess.Popen(
        [sys.executable, "-c", code_text, str(batch), "--out", str(out), "--threads", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 240
    while time.time() < deadline and process.poll() is None and len(list(out.glob("*_overlay.png"))) < 20:
        time.sleep(0.01)
    assert process.poll() is None, "the batch ended before the signal; make it longer"
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == code, stderr
    assert "Traceback" not in stderr and "interrupted (" in stderr, stderr
    assert leftovers(out) == []
    whole, broken = pairs_are_whole(out)
    assert broken == set() and 20 <= len(whole) < 150 * 9
    assert not (out / "results.json").exists(), "an earlier run's results.json would describe other files"


def test_exit_cleanly_on_signals_removes_a_partial_being_written(tmp_path: Path) -> None:
    target = tmp_path / "big.bin"
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(SystemExit) as stop, exit_cleanly_on_signals():
        with atomic_path(target) as partial:
            partial.write_bytes(b"half")
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # the handler raises here
    assert stop.value.code == 143
    assert list(tmp_path.iterdir()) == []
    assert signal.getsignal(signal.SIGTERM) == before, "the previous handler must be restored"


def test_a_scan_that_no_longer_reads_loses_the_outputs_an_earlier_run_wrote_for_it(real_slices: Path, tmp_path: Path):
    folder, out = tmp_path / "scans", tmp_path / "out"
    folder.mkdir()
    for scan in scans(real_slices)[:2]:
        shutil.copy(scan, folder / scan.name)
    first = CliRunner().invoke(cli.main, [str(folder), "--out", str(out)])
    assert first.exit_code == 0, first.output
    broken = sorted(folder.iterdir())[0]
    broken.write_bytes(b"not a png any more")
    second = CliRunner().invoke(cli.main, [str(folder), "--out", str(out)])
    assert second.exit_code == 1
    whole, half = pairs_are_whole(out)
    assert broken.stem not in whole and not half, "the old mask would pass for this run's"
    assert len(whole) == 1 and leftovers(out) == []
