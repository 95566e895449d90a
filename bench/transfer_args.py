"""Command-line options every few-shot transfer bench shares: ``--data``, ``--samples``, ``--trials``, ``--seed``."""

from __future__ import annotations

import argparse
from pathlib import Path

DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets"  # ../shared/datasets beside the checkout


def transfer_parser(doc: str | None, dataset: str = "help-nb201") -> argparse.ArgumentParser:
    """A parser described by ``doc``'s first line, with ``--data`` (default ``../shared/datasets/<dataset>``),
    ``--samples`` (K values, comma-separated: ``sample_sizes``), ``--trials`` and ``--seed``."""
    parser = argparse.ArgumentParser(description=(doc or "").splitlines()[0] if doc else None)
    parser.add_argument("--data", type=Path, default=DATASETS / dataset)
    parser.add_argument("--samples", default="5,10,20")
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    return parser


def sample_sizes(samples: str) -> list[int]:
    """``--samples`` as the K values: ``"5,10,20"`` -> ``[5, 10, 20]``."""
    return [int(k) for k in samples.split(",")]
