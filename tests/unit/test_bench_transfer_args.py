"""The transfer benches' shared options (bench/transfer_args.py): ``--samples`` under ``eval transfer``'s rule."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import transfer_args  # noqa: E402


def test_samples_are_the_k_values_default_and_given():
    parser = transfer_args.transfer_parser("A bench.")
    assert parser.parse_args([]).samples == [5, 10, 20]
    assert parser.parse_args(["--samples", "3,40"]).samples == [3, 40]


@pytest.mark.parametrize("text", ["0", "5,abc", ""])
def test_bad_samples_are_a_usage_error_naming_the_rule(text, capsys):
    with pytest.raises(SystemExit) as exit_:
        transfer_args.transfer_parser("A bench.").parse_args(["--samples", text])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert f"argument --samples: K values must be comma-separated integers >= 1 (like 5,10,20), got {text!r}" in err
