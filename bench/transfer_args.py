"""Command-line options every few-shot transfer bench shares: ``--data``, ``--samples``, ``--trials``, ``--seed``."""

from __future__ import annotations

import argparse
from pathlib import Path

from latfarm.predictor.selection import k_values

DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets"  # ../shared/datasets beside the checkout


def transfer_parser(doc: str | None, dataset: str = "help-nb201") -> argparse.ArgumentParser:
    """A parser described by ``doc``'s first line, with ``--data`` (default ``../shared/datasets/<dataset>``),
    ``--samples`` (K values, ``predictor.selection.k_values``: a list of ints, a usage error naming the rule
    otherwise), ``--trials`` and ``--seed``."""
    parser = argparse.ArgumentParser(description=(doc or "").splitlines()[0] if doc else None)
    parser.add_argument("--data", type=Path, default=DATASETS / dataset)
    parser.add_argument("--samples", type=_k_values, default="5,10,20")
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    return parser


def _k_values(text: str) -> list[int]:
    """``--samples``: ``predictor.selection.k_values``, its ``ValueError`` a usage error (exit 2)."""
    try:
        return k_values(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from err
