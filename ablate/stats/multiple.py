"""Holm's step-down adjustment of a family of p-values.

statsmodels' `multipletests(method="holm")` gives the same numbers (tests/test_stats_small.py
checks it) but calls `gc.collect()` on every call, which costs 0.1-0.2 s in a process that holds
torch; the report and the simulations of the tests call it thousands of times.
"""

from __future__ import annotations

import numpy as np


def holm(p) -> np.ndarray:
    """Holm-adjusted p-values of the (m,) p-values `p`, in their order. The family is the finite
    ones (NaN: no test, left NaN): the i-th smallest of its k becomes max over j <= i of
    (k - j + 1) p_(j), at most 1."""
    p = np.asarray(p, dtype=float)
    adjusted = np.full(p.shape, np.nan)
    tested = np.flatnonzero(np.isfinite(p))
    order = tested[np.argsort(p[tested], kind="stable")]
    steps = np.maximum.accumulate((len(order) - np.arange(len(order))) * p[order])
    adjusted[order] = np.minimum(steps, 1.0)
    return adjusted
