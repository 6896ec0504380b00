"""Every command's --help answers without loading TensorFlow, and saunet-export's flags are its formats table."""

from __future__ import annotations

import pytest

from conftest import BLOCK_TENSORFLOW, run_python


@pytest.mark.parametrize(
    "module, command",
    [
        ("saunet.training.cli", "train"),
        ("saunet.training.cli", "evaluate"),
        ("saunet.quantize.cli", "main"),
    ],
)
def test_help_does_not_import_tensorflow(module: str, command: str) -> None:
    result = run_python(
        BLOCK_TENSORFLOW + f"import sys; sys.argv = ['x', '--help']\nfrom {module} import {command}\n{command}()"
    )
    assert result.returncode == 0, result.stderr
    assert "Usage:" in result.stdout and "blocked" not in result.stderr


def test_export_flags_are_the_formats_table() -> None:
    from click.testing import CliRunner

    from saunet.quantize.cli import main
    from saunet.quantize.formats import LITERT

    shown = CliRunner().invoke(main, ["--help"]).output
    for fmt in LITERT:
        assert f"{fmt.flag} " in shown and f"| {fmt.name} | `{fmt.flag}` |" in shown
    flags = {o for p in main.params for o in p.opts if p.name == "formats"}
    assert flags == {f.flag for f in LITERT}, "the ONNX rows are saunet-bench's, not export flags"
