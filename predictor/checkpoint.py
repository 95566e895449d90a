"""Writing a predictor checkpoint: a compressed ``.npz`` with its metadata inside, and a readable ``.json`` sidecar."""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import numpy as np

from latfarm.predictor.prior import Prior

# the prior's fields as a checkpoint names its arrays, in ``Prior``'s order
PRIOR_ARRAYS = ("prior_mean", "prior_cov", "prior_spread", "noise_grid", "noise_log_prior")


def prior_arrays(prior: Prior) -> dict[str, np.ndarray]:
    """``prior`` as a checkpoint's arrays (``PRIOR_ARRAYS``)."""
    fields = (prior.mean, prior.cov, prior.spread, prior.noise_grid, prior.noise_log_prior)
    return dict(zip(PRIOR_ARRAYS, fields, strict=True))


def read_prior(npz) -> Prior:
    """The ``Prior`` stored in an opened checkpoint (``np.load``)."""
    return Prior(*(npz[name] for name in PRIOR_ARRAYS))


def write_atomic(target: Path, write: Callable[[BinaryIO], object]) -> None:
    """Create or replace ``target`` with what ``write`` writes to a binary file: it writes a new temporary file
    beside it, which is renamed into place (an interrupted write, Ctrl-C or a full disk, leaves the previous file
    whole). The temporary file is created as a plain ``open`` creates one (0o666 less the umask), so ``target`` gets
    those permissions, not ``tempfile``'s 0o600."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_checkpoint(path: Path, meta: dict, arrays: dict[str, np.ndarray]) -> Path:
    """Write ``arrays`` and ``meta`` (as the array ``__meta__``, JSON) to ``path`` and ``meta`` to ``path`` with the
    suffix ``.json``, each with ``write_atomic``: an interrupted write leaves the previous checkpoint whole. Returns
    ``path``."""
    path = Path(path)
    named = {"__meta__": np.array(json.dumps(meta)), **arrays}
    write_atomic(path, lambda fh: np.savez_compressed(fh, **named))  # type: ignore[arg-type]  # stub: allow_pickle
    write_atomic(path.with_suffix(".json"), lambda fh: fh.write((json.dumps(meta, indent=2) + "\n").encode()))
    return path
