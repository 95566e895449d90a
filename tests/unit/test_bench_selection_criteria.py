"""bench/selection_criteria.py's options: by default the shipped criterion and the baselines the docs compare it
with; an unknown name is a usage error naming the known ones."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import selection_criteria  # noqa: E402


def test_the_default_criteria_are_the_shipped_one_and_the_documented_baselines():
    docs = (Path(__file__).resolve().parents[2] / "docs" / "predictor-experiments.md").read_text()
    section = docs.split("#### Sample selection criteria", 1)[1].split("####", 1)[0]
    first_table = section.split("| criterion |", 1)[1].split("\n\n", 1)[0]
    compared = [row.split("|")[1].strip().split(" ")[0] for row in first_table.splitlines()[2:]]
    args = selection_criteria.parser().parse_args([])
    assert args.criteria == compared == list(selection_criteria.DEFAULT_CRITERIA)
    assert args.criteria[0] == "variance"  # the shipped criterion (``Predictor.select_samples``)
    assert (args.splits, args.fits) == (list(selection_criteria.SPLITS), ["full"])
    given = selection_criteria.parser().parse_args(["--criteria", "variance,dens5", "--fits", "full,median"])
    assert (given.criteria, given.fits) == (["variance", "dens5"], ["full", "median"])


@pytest.mark.parametrize(("option", "known"), [("--criteria", "variance"), ("--splits", "device"), ("--fits", "full")])
def test_an_unknown_name_is_a_usage_error_naming_the_known_ones(option, known, capsys):
    with pytest.raises(SystemExit) as exit_:
        selection_criteria.parser().parse_args([option, f"{known},nope"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.splitlines()[-1]
    assert f"argument {option}: unknown 'nope': use names of {known}, " in err
