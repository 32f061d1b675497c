"""Holm's step-down adjustment of a family of p-values.

statsmodels' `multipletests(method="holm")` gives the same numbers (tests/test_stats_small.py
checks it) but calls `gc.collect()` on every call, which costs 0.1-0.2 s in a process that holds
torch; the report and the simulations of the tests call it thousands of times.
"""

from __future__ import annotations

import numpy as np


def holm(p: np.ndarray) -> np.ndarray:
    """Holm-adjusted p-values of the (m,) p-values `p` (finite, in [0, 1]), in their order:
    the i-th smallest becomes max over j <= i of (m - j + 1) p_(j), at most 1."""
    p = np.asarray(p, dtype=float)
    order = np.argsort(p, kind="stable")
    steps = np.maximum.accumulate((len(p) - np.arange(len(p))) * p[order])
    adjusted = np.empty_like(p)
    adjusted[order] = np.minimum(steps, 1.0)
    return adjusted
