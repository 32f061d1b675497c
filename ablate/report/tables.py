"""The tables of a study report (Markdown and LaTeX) and its headline sentence."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ablate import stats
from ablate.models.arms import NOT_APPLICABLE
from ablate.report import text
from ablate.report.controls import (
    SPLIT_HEADER,
    gap_rows,
    has_controls,
    orbit_rows,
    own_group_sentence,
    split_rows,
    split_sentence,
)

if TYPE_CHECKING:
    from ablate.report.analysis import StudyReport


def _pct(x: float, digits: int = 2) -> str:
    """A fraction as a table cell: '20.97' (the column says %), NOT_APPLICABLE when missing."""
    return text.pct(x, digits, unit="", missing=NOT_APPLICABLE)


def _count(x: float) -> str:
    """A count as a table cell: '19,694', NOT_APPLICABLE where a table of your own has none."""
    return f"{int(x):,}" if np.isfinite(x) else NOT_APPLICABLE


def _p(x: float) -> str:
    return NOT_APPLICABLE if not np.isfinite(x) else (f"{x:.2g}" if x >= 1e-4 else f"{x:.1e}")


def _share_cell(row: pd.Series, method: str) -> str:
    kind = row.get("fieller_kind", "bounded") if method == "fieller" else "bounded"
    return text.format_interval(row[f"share_rep_lo_{method}"], row[f"share_rep_hi_{method}"], kind)


def _change_cell(report: StudyReport, budget, variant: str) -> str:
    """The runs' movement column: mean absolute test-error change over the last epochs and its
    upper 95% bound (points): how much single runs still move, a note about noise (the verdict is
    on the share: the share table's stability column)."""
    if report.convergence is None:
        return NOT_APPLICABLE
    c = report.convergence[
        (report.convergence["budget"] == budget) & (report.convergence["variant"] == variant)
    ]
    if c.empty or c["unknown"].iloc[0]:
        return NOT_APPLICABLE
    row = c.iloc[0]
    return f"{100 * row['mean_abs_change']:.2f} ({text.bound(row)})"


def arm_rows(report: StudyReport) -> list[list[str]]:
    """Table cells per budget and model variant: params, MACs, test error mean ± sd (n), and how
    much its runs still move (stats.convergence: mean absolute change over the last 20% of epochs)."""
    cells = report.runs.groupby(["budget", "variant"])[["n_params", "macs"]].mean()
    rank = {v: i for i, v in enumerate(report.variants)}
    rows = []
    ordered = report.summary.sort_values(
        ["budget", "variant"], key=lambda c: c.map(rank) if c.name == "variant" else c
    )
    for _, s in ordered.iterrows():
        n_params, macs = cells.loc[(s["budget"], s["variant"])]
        spread = f" ± {_pct(s['sd'])}" if np.isfinite(s["sd"]) else ""
        cell = f"{_pct(s['mean'])}{spread} ({int(s['n'])})"
        change = _change_cell(report, s["budget"], s["variant"])
        row = [f"{int(s['budget']):,}", s["variant"], _count(n_params), _count(macs), cell, change]
        rows.append(row)
    return rows


PAPER_HEADER = [
    "model",
    "params",
    "test error % mean ± sd (n)",
    "95% CI of the mean",
    "best-epoch error % (optimistic: chosen on the test set)",
    "invariance error %",
]


def paper_rows(report: StudyReport) -> list[list[str]]:
    """The seed paper's table: one row per model (baseline, c4, c4_rep, ...)."""
    rows = []
    for m in report.paper.models.itertuples():
        spread = f" ± {_pct(m.sd)}" if np.isfinite(m.sd) else ""
        best = f"{_pct(m.best_mean)}" + (f" ± {_pct(m.best_sd)}" if np.isfinite(m.best_sd) else "")
        rows.append(
            [
                m.model,
                f"{int(m.n_params):,}",
                f"{_pct(m.mean)}{spread} ({int(m.n)})",
                text.format_interval(m.lo, m.hi) if np.isfinite(m.lo) else NOT_APPLICABLE,
                best,
                _pct(m.invariance_error),
            ]
        )
    return rows


def share_rows(report: StudyReport) -> list[list[str]]:
    """Table cells per budget (and design): gains, repetition share with its intervals, the tests,
    and, with an augmented arm, its gain and the share of the G-CNN's gain it recovers."""
    if report.table is None:
        return []
    rows = []
    augmented = "gain_aug" in report.table
    for i, t in report.table.reset_index(drop=True).iterrows():
        log = report.table_log.reset_index(drop=True).iloc[i] if report.table_log is not None else None
        if t["identifiable"]:
            boot = (
                f"{_share_cell(t, 'boot')} ({t['boot_method']})"
                if np.isfinite(t["share_rep_lo_boot"])
                else NOT_APPLICABLE
            )
            share = [_pct(t["share_rep"], 1), _share_cell(t, "delta"), _share_cell(t, "fieller"), boot]
        else:
            share = [
                "not identifiable" + (" (degenerate)" if t["degenerate"] else ""),
                NOT_APPLICABLE,
                NOT_APPLICABLE,
                NOT_APPLICABLE,
            ]
        if log is not None and log["identifiable"]:
            share.append(f"{_pct(log['share_rep'], 1)} ({_share_cell(log, 'delta')})")
        else:
            share.append("not identifiable")
        row = [t["design"], _pct(t["gain_total"]), _pct(t["gain_rep"]), _pct(t["gain_eq"]), *share]
        row += [_p(t["p_total"]), _p(t["p_rep"]), _p(t["p_eq"]), _stability_cell(report, t)]
        if augmented:
            aug = text.format_interval(t["share_aug_lo"], t["share_aug_hi"])
            row += [_pct(t["gain_aug"]), _p(t["p_aug"]), f"{_pct(t['share_aug'], 1)} ({aug})"]
        rows.append(row)
    return rows


def _stability_cell(report: StudyReport, t: pd.Series) -> str:
    """The share's change over the last epochs with its interval and verdict (stats.share_stability)."""
    if report.stability is None:
        return NOT_APPLICABLE
    s = report.stability
    same = s[(s["budget"] == t["budget"]) & (s["group_order"] == t["group_order"])]
    same = same[same["repeat_structure"] == t["repeat_structure"]]
    return text.stability_phrase(same.iloc[0]) if len(same) else NOT_APPLICABLE


def share_header(report: StudyReport) -> list[str]:
    """The share table's columns (the augmentation ones only when the study has that arm)."""
    extra = (
        ["aug gain (pts)", "p aug", "aug share of G-CNN gain % (95% CI)"]
        if "gain_aug" in report.table
        else []
    )
    return SHARE_HEADER + extra


ARM_HEADER = [
    "budget",
    "arm",
    "params",
    "MACs",
    "test error % mean ± sd (n)",
    f"runs' mean abs. change over last {100 * stats.convergence_window:.0f}% of epochs (pts, 95% bound)",
]
SHARE_HEADER = [
    "design",
    "gain total (pts)",
    "gain rep (pts)",
    "gain eq (pts)",
    "repetition share %",
    "95% CI delta",
    "95% CI Fieller",
    "95% CI bootstrap",
    "share on log error % (95% CI delta)",
    "p total",
    "p rep",
    "p eq",
    f"share's change over last {100 * stats.convergence_window:.0f}% of epochs (pts, 95% CI)",
]


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    """A Markdown pipe table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def latex_table(header: list[str], rows: list[list[str]]) -> str:
    """A booktabs LaTeX tabular, special characters escaped."""

    def esc(cell: str) -> str:
        return (
            cell.replace("\\", r"\textbackslash{}")
            .replace("%", r"\%")
            .replace("±", r"$\pm$")
            .replace("–", "--")
            .replace("_", r"\_")
            .replace("&", r"\&")
            .replace("U", r"$\cup$")
            .replace("inf", r"$\infty$")
        )

    lines = [
        r"\begin{tabular}{" + "l" * len(header) + "}",
        r"\toprule",
        " & ".join(esc(h) for h in header) + r" \\",
        r"\midrule",
    ]
    lines += [" & ".join(esc(c) for c in row) + r" \\" for row in rows]
    return "\n".join(lines + [r"\bottomrule", r"\end{tabular}"])


def headline_text(report: StudyReport) -> str:
    """The report's headline sentence, or why there is none yet."""
    if report.table is None:
        return (
            "The repetition share cannot be estimated yet: intervals and tests need at least two "
            "ok seeds of every arm at some budget."
        )
    return text.headline_sentence(
        report.table, report.group_label, report.dataset, report.pooled, report.unstable
    )


def share_table_caption(report: StudyReport) -> str:
    """What the share table's numbers are: scale, tests, which intervals are shown and why."""
    boot = (
        ""
        if report.table["share_rep_lo_boot"].notna().any()
        else f" No bootstrap intervals: they under-cover below {stats.MIN_BOOT_SEEDS} seeds per arm."
    )
    return (
        f"Scale: {stats.SCALE_LABELS['points']}. p-values one-sided "
        "(gain > 0), Welch t-tests, Holm-adjusted over all budgets and gains. A share is given only "
        "where the total gain is clearly non-zero (its Fieller set is one bounded interval). Within a "
        "budget the share of the relative gain equals the share in points; the share of the gain "
        f"in log test error weighs relative improvements instead.{boot} The last column judges "
        f"convergence on the share itself: {text.stability_rule()}."
    )


def _control_sections(report: StudyReport) -> list[str]:
    """The Markdown of the sharing-or-symmetry sections (report.controls)."""
    md = [
        "",
        "## Sharing or symmetry",
        "",
        split_sentence(report),
        "",
        markdown_table(SPLIT_HEADER, split_rows(report)),
    ]
    md += [
        "",
        "The wide arm is the G-CNN's physical widths with every weight free: a reference beside the shares, "
        "never inside them (its gains: one less the other's error, two-sided Welch tests, Holm).",
    ]
    if report.invariance_gaps is not None and len(report.invariance_gaps):
        header = ["design", "invariance under", "arm", "gap to plain (pts)", "95% CI", "p (Holm)"]
        what = (
            "A positive gap: the arm's predictions change less than the plain CNN's (one-sided Welch tests)."
        )
        md += ["", "## Learned invariance against the plain arm", "", what, ""]
        md += [markdown_table(header, gap_rows(report))]
        own = own_group_sentence(report)
        md += ["", own] if own else []
    if report.orbit is not None and len(report.orbit):
        header = ["design", "arm", "test error %", "orbit-averaged error %", "gap to the G-CNN closed"]
        md += [
            "",
            "## Test-time averaging over the design's group",
            "",
            markdown_table(header, orbit_rows(report)),
        ]
    return md


def write_tables(report: StudyReport, out: Path) -> list[Path]:
    """Write table.md and table.tex into `out`; returns their paths."""
    head = headline_text(report)
    notes = "".join(f"\n- {n}" for n in report.notes)
    md = [
        f"# {report.name}: {report.title}",
        "",
        head,
        "",
        "## Test error per arm",
        "",
        markdown_table(ARM_HEADER, arm_rows(report)),
    ]
    tex = [f"% {report.name}: {report.title}", f"% {head}", latex_table(ARM_HEADER, arm_rows(report))]
    if report.paper is not None:
        width = f" (width x {report.paper.width:g})" if report.paper.width != 1.0 else ""
        md += ["", f"## The paper's table{width}", "", text.paper_sentence(report.paper), ""]
        md += [markdown_table(PAPER_HEADER, paper_rows(report))]
        tex += ["", f"% {text.paper_sentence(report.paper)}", latex_table(PAPER_HEADER, paper_rows(report))]
    if report.table is not None:
        md += [
            "",
            "## Repetition share of the G-CNN's gain",
            "",
            share_table_caption(report),
            "",
            markdown_table(share_header(report), share_rows(report)),
        ]
        tex += ["", f"% {share_table_caption(report)}", latex_table(share_header(report), share_rows(report))]
        if report.pooled is not None:
            p = report.pooled.iloc[0]
            md += ["", f"Repetition share {text.pooled_phrase(report.pooled)} ({p['method']})."]
        for half_width, needed in report.seeds.items():
            md += ["", text.seeds_sentence(needed, half_width)]
        single = text.single_seed_lines(report.single_seed, report.table)
        if single:
            md += ["", "## One seed against many", "", single[0], ""] + [
                f"- {line.strip()}" for line in single[1:]
            ]
    if has_controls(report):
        md += _control_sections(report)
    md += ["", text.exchangeability_sentence(report.trends)]
    if notes:
        md += ["", "## Notes", notes.lstrip("\n")]
    paths = [out / "table.md", out / "table.tex"]
    paths[0].write_text("\n".join(md) + "\n")
    paths[1].write_text("\n".join(tex) + "\n")
    return paths
