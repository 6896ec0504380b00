"""Writing files so that a failure, a full disk or a signal never leaves a half-written one behind."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

#: Temporary files being written right now (by any thread), removed by `exit_cleanly_on_signals`.
_PARTIALS: set[Path] = set()
_PARTIALS_LOCK = threading.Lock()


class OutputError(OSError):
    """An output that cannot be written (one line, naming the file or folder and why)."""

    def __init__(self, path: Path | str, problem: str):
        super().__init__(f"{path}: {problem}")
        self.path = Path(path)
        self.problem = problem

    def __str__(self) -> str:
        return self.args[0]


def reason(error: OSError) -> str:
    """An OSError's cause in a few words ("No space left on device"), without its path."""
    return error.strerror or str(error) or type(error).__name__


def partial_path(path: Path) -> Path:
    """The hidden temporary name `path` is written under: this process's own, so that two commands
    writing into one folder never write into each other's partial file; it keeps the suffix, since
    some writers (Keras, pillow) choose the format by it."""
    return path.with_name(f".{path.stem}.partial-{os.getpid()}{path.suffix}")


@contextlib.contextmanager
def atomic_path(path: Path | str) -> Iterator[Path]:
    """Yields a temporary path beside `path`; renames it onto `path` only if the block succeeds.

    On any error, and on SIGINT or SIGTERM inside `exit_cleanly_on_signals`, the partial file
    is removed and the old `path`, if any, is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = partial_path(path)
    with _PARTIALS_LOCK:
        _PARTIALS.add(partial)
    try:
        yield partial
        os.replace(partial, path)
    finally:
        with contextlib.suppress(OSError):
            partial.unlink(missing_ok=True)
        with _PARTIALS_LOCK:
            _PARTIALS.discard(partial)


def write_text(path: Path | str, text: str) -> None:
    """Writes a text file atomically."""
    with atomic_path(path) as partial:
        partial.write_text(text)


def remove_files(*paths: Path) -> None:
    """Removes files that may or may not exist, quietly: used to undo a set of outputs that
    failed part-way (a folder or an undeletable file in their place stays, and is not an error here)."""
    for path in paths:
        with contextlib.suppress(OSError):
            if not path.is_dir():
                path.unlink(missing_ok=True)


def remove_partials() -> None:
    """Removes every temporary file still registered by `atomic_path`."""
    with _PARTIALS_LOCK:
        partials = list(_PARTIALS)
    remove_files(*partials)


class Interrupted(BaseException):
    """SIGINT or SIGTERM, raised in the main thread so that every `finally` runs (BaseException,
    like KeyboardInterrupt, so that no `except Exception` swallows it)."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        """The shell's convention: 128 + the signal number (130 for SIGINT, 143 for SIGTERM)."""
        return 128 + self.signum


@contextlib.contextmanager
def exit_cleanly_on_signals(signals: tuple[int, ...] = (signal.SIGINT, signal.SIGTERM)) -> Iterator[None]:
    """Within the block, SIGINT and SIGTERM end the command cleanly.

    The signal raises `Interrupted` in the main thread; `finally` blocks and context managers
    on the way out remove their temporary files and wait for writes in flight (each is atomic),
    any partial file still registered is removed, and the process exits with 130 or 143 after
    one line on stderr. A second signal while this happens is ignored, so cleaning up is not
    itself interrupted. Only the main thread can install handlers; elsewhere this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []

    def handler(signum, frame) -> None:
        if received:
            return
        received.append(signum)
        raise Interrupted(signum)

    previous = {signum: signal.signal(signum, handler) for signum in signals}
    try:
        yield
    except Interrupted as stop:
        remove_partials()
        print(f"interrupted ({stop}); outputs written so far are complete, none is partial", file=sys.stderr)
        raise SystemExit(stop.exit_code) from None
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)
