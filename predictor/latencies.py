"""The one rule for latency figures, shared by every importer, pretraining, adaptation and agents' reports.

A latency is a finite number of milliseconds in [``MIN_LATENCY_MS``, ``MAX_LATENCY_MS``] (0.1 µs to about 2.8 h).
Zero is refused like a negative: a 0 s cell in a dataset is a cut-off or failed measurement, not a latency, and the
predictor's scale fit divides by it; a figure beyond the bounds is a unit mix-up or a bogus report, and one such
value would dominate a device's fit. Where a caller allows gaps (HELP-layout folders, whose NaN means "not
measured"), NaN entries are not checked; ``inf`` always is refused.
"""

from __future__ import annotations

import numpy as np

from latfarm.common.ranges import out_of_range

MIN_LATENCY_MS = 1e-4
MAX_LATENCY_MS = 1e7
BOUNDS = {"ge": MIN_LATENCY_MS, "le": MAX_LATENCY_MS}  # in ms


def checked_latencies(values: object, where: str, *, allow_nan: bool = False, to_ms: float = 1.0) -> np.ndarray:
    """``values`` as a float64 array of shape (n,) in the caller's unit, checked against the rule once multiplied
    by ``to_ms`` (the caller's unit in ms: 1000 for seconds).

    Raises ``ValueError`` naming ``where`` and the first bad entry in ms (``"<where>: entry 3 must be between
    0.0001 ms and 10000000 ms, got 0 ms"``; ``values`` a single number: ``"<where>: must be ..."``), or that the
    values are not a flat sequence of numbers.
    """
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{where}: latencies must be numbers ({err})") from err
    single = array.ndim == 0  # one value (a CSV cell), which ``where`` names: no entry number
    array = array.reshape(1) if single else array
    if array.ndim != 1:
        raise ValueError(f"{where}: expected a flat list of latencies, found shape {array.shape}")
    with np.errstate(invalid="ignore", over="ignore"):
        ok = (array * to_ms >= MIN_LATENCY_MS) & (array * to_ms <= MAX_LATENCY_MS)  # NaN and inf fail both
    if allow_nan:
        ok |= np.isnan(array)
    if (bad := np.flatnonzero(~ok)).size:
        got = f"{float(array[bad[0]]) * to_ms:g} ms"
        entry = "" if single else f"entry {bad[0]} "
        raise ValueError(f"{where}: {entry}{out_of_range(got, BOUNDS, 'ms')}")
    return array
