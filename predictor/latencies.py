"""The one rule for latency figures, shared by every importer, pretraining and adaptation.

A latency is a positive, finite number of milliseconds. Zero is refused like a negative: a 0 s cell in a dataset is
a cut-off or failed measurement, not a latency, and the predictor's scale fit divides by it. Where a caller allows
gaps (HELP-layout folders, whose NaN means "not measured"), NaN entries are not checked; ``inf`` always is refused.
"""

from __future__ import annotations

import numpy as np

RULE = "latencies must be positive, finite ms"


def checked_latencies(values: object, where: str, *, allow_nan: bool = False) -> np.ndarray:
    """``values`` as a float64 array of shape (n,) in the caller's unit, checked against the rule.

    Raises ``ValueError`` naming ``where`` and the first bad entry (``"<where>: entry 3 is 0.0; <RULE>"``), or that
    the values are not a flat sequence of numbers.
    """
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{where}: latencies must be numbers ({err})") from err
    if array.ndim != 1:
        raise ValueError(f"{where}: expected a flat list of latencies, found shape {array.shape}")
    ok = np.isfinite(array) & (array > 0)
    if allow_nan:
        ok |= np.isnan(array)
    if (bad := np.flatnonzero(~ok)).size:
        raise ValueError(f"{where}: entry {bad[0]} is {float(array[bad[0]])!r}; {RULE}")
    return array
