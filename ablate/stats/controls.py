"""Sharing or symmetry (issue 42): the G-CNN's gain split three ways by the wrong-group arm (the
G-CNN on a group of the same order that is not a symmetry of the data), and the wide arm (the
G-CNN's physical widths with every weight free) as a compute-matched reference beside it.

    gain_total = (e_plain - e_repeat) + (e_repeat - e_wrong) + (e_wrong - e_gcnn)
               =       gain_rep       +     gain_struct      +      gain_sym

so share_rep + share_struct + share_sym = 1 and share_struct + share_sym = share_eq = 1 -
share_rep: the sharing-structure share is what group-structured weight sharing adds over learnable
repetition, the symmetry share what the right group adds over a wrong one. Each share has its
delta and Fieller intervals (ratio.ratio_moments with its own numerator). The wide arm is a
reference, never inside the shares: gain_wide = e_plain - e_wide (size and parameters together)
and gain_free = e_repeat - e_wide (what free parameters add at the repeat arm's physical size).
"""

from __future__ import annotations

import math

from ablate.stats.gain_tests import gain_tests
from ablate.stats.multiple import holm
from ablate.stats.ratio import delta_interval, fieller_interval, quantile, ratio_moments
from ablate.stats.table import SHARES, Cell

STEP_SHARES = ("struct", "sym")  # the two parts of the equivariance share, with the wrong arm
WIDE_GAINS = {"wide": ("plain", "wide"), "free": ("repeat", "wide")}


def step_share_columns(cell: Cell, paired: bool, confidence: float, name: str, shown: bool) -> dict:
    """share_<name> (SHARES[name]'s gain over the total gain) with its delta and Fieller intervals
    (share_<name>_lo_delta ... _hi_fieller); NaN unless `shown` (the total gain is clearly
    non-zero: the repetition share's identifiability, one rule for the three shares)."""
    m = ratio_moments([cell], paired, numerator=SHARES[name])
    q = quantile(m, confidence)
    lo_d, hi_d = delta_interval(m.num, m.den, m.var_num, m.var_den, m.cov, q)
    lo_f, hi_f, _ = fieller_interval(m.num, m.den, m.var_num, m.var_den, m.cov, q)
    values = {"": m.share, "_lo_delta": lo_d, "_hi_delta": hi_d, "_lo_fieller": lo_f, "_hi_fieller": hi_f}
    return {f"share_{name}{k}": (v if shown else math.nan) for k, v in values.items()}


def control_columns(cell: Cell, paired: bool, confidence: float, shown: bool) -> dict:
    """With the wrong arm: gain_struct, gain_sym, their one-sided t-tests (p_struct_raw,
    p_sym_raw) and step_share_columns of each; with the wide arm: gain_wide and gain_free
    (two-sided test p_<gain>_raw: wide may be better or worse). Empty without either arm."""
    row: dict = {}
    if "wrong" in cell.y:
        for name in STEP_SHARES:
            worse, better = SHARES[name]
            row[f"gain_{name}"] = float(cell.y[worse].mean() - cell.y[better].mean())
            row[f"p_{name}_raw"] = gain_tests(cell.y[worse], cell.y[better], paired, 0, 0, confidence)[0]
            row.update(step_share_columns(cell, paired, confidence, name, shown))
    if "wide" in cell.y:
        for name, (worse, better) in WIDE_GAINS.items():
            row[f"gain_{name}"] = float(cell.y[worse].mean() - cell.y[better].mean())
            one_sided = gain_tests(cell.y[worse], cell.y[better], paired, 0, 0, confidence)[0]
            row[f"p_{name}_raw"] = (
                min(1.0, 2 * min(one_sided, 1 - one_sided)) if math.isfinite(one_sided) else math.nan
            )
    return row


def holm_controls(rows: list[dict]) -> None:
    """p_struct and p_sym (one Holm family over every design), p_wide and p_free (another), in
    place; the decomposition's own family of three gains is left as it is."""
    for family in (STEP_SHARES, tuple(WIDE_GAINS)):
        tests = [(i, name) for i, row in enumerate(rows) for name in family if f"p_{name}_raw" in row]
        if tests:
            adjusted = holm([rows[i][f"p_{name}_raw"] for i, name in tests])
            for (i, name), p in zip(tests, adjusted):
                rows[i][f"p_{name}"] = float(p)
