"""The bridge study: from the paper's "up to 40%" to this package's answer, one factor at a time.

Each step changes one thing from the step before (docs/bridge.md): A the answer study's
budget-matched triplet at 20,000 parameters; B + the paper's augmentation; C the paper's own
models, width-scaled, C4; D + C8 and C16, "up to" taken over N; E the paper's estimator (one
seed, best-epoch errors, largest over N) on the runs of C and D. `analyse_bridge` reads the
steps' results folders and computes every number once; `bridge_table`, `bridge_sentence` and
`fig_bridge` show them.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ablate import stats
from ablate.models.arms import DEFAULT_STRUCTURE
from ablate.report.figures import _axes, _decorate
from ablate.report.text import format_interval, pct
from ablate.results import StudyResults

THRESHOLD = 0.40  # the paper's figure


@dataclass(frozen=True)
class Step:
    """A step: its letter, what it changes, the seeds per arm it plans (docs/bridge.md), and the
    results folders (under the results root) and budget its runs come from (None: every budget)."""

    key: str
    change: str
    seeds: int
    folders: tuple[str, ...]
    budget: int | None = None


STEPS = (
    Step("A", "budget-matched triplet at 20,000 parameters, C4, no augmentation", 24, ("answer",), 20_000),
    Step("B", "+ the paper's augmentation for every arm (29x29 inputs)", 20, ("bridge/bridge-b",)),
    Step("C", "the paper's own models, width x 0.25, C4, its training script", 10, ("bridge/bridge-c",)),
    Step("D", '+ C8 and C16; "up to" = the largest share over N', 10, ("bridge/bridge-c", "bridge/bridge-d")),
)


@dataclass
class BridgeReport:
    """rows: one per step and design (A and B: both repeat controls; D: each N), with the
    decomposition's columns (stats.decompose) plus step, change, models (names and parameters),
    design ('C4, matched control' where a step has both controls, else 'C4'), n (fewest seeds of
    an arm), `pilot` (the seeds stats.seeds_needed asks for from the first 3,
    for a +-10-point interval; -1 when it cannot say), `up_to` (D's largest share over N) and
    `unconverged` (the design's cells whose test error moved by more than
    stats.convergence_threshold over the last stats.convergence_window of epochs; '' when none).
    single: step E, the paper's estimator on C and D's runs with all three N, by "best" and
    "final" errors. missing: steps not finished (no runs, or an arm with fewer than 2 seeds)."""

    rows: pd.DataFrame
    single: dict[str, stats.SingleSeedShares] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _read(root: Path, step: Step) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The step's runs and history, from its folders (a run in two folders counted once)."""
    runs, history = [], []
    for folder in step.folders:
        store = StudyResults(root / Path(folder).parent, Path(folder).name)
        runs.append(store.runs())
        history.append(store.history())
    runs = pd.concat([r for r in runs if len(r)] or [runs[0]], ignore_index=True).drop_duplicates("run_key")
    history = pd.concat([h for h in history if len(h)] or [history[0]], ignore_index=True)
    history = history.drop_duplicates(["run_key", "epoch"])
    if step.budget is not None:
        runs = runs[runs["budget"] == step.budget]
    return runs[runs["status"] == "ok"], history[history["run_key"].isin(runs["run_key"])]


def _models(runs: pd.DataFrame, row: pd.Series) -> str:
    """'plain 19,694 · repeat 19,794 · gcnn 20,108' for one design (preset names where set)."""
    parts = []
    for arm in ("plain", "repeat", "gcnn"):
        mine = runs[runs["arm"] == arm]
        if arm != "plain":
            mine = mine[mine["group_order"] == row["group_order"]]
        if arm == "repeat":
            mine = mine[mine["repeat_structure"].replace("", DEFAULT_STRUCTURE) == row["repeat_structure"]]
        if len(mine):
            name = mine["model_name"].iloc[0] or arm
            parts.append(f"{name} {int(mine['n_params'].iloc[0]):,}")
    return " · ".join(parts)


def _unconverged(runs: pd.DataFrame, conv: pd.DataFrame, row: pd.Series) -> str:
    """'c4_rep +0.8 pts; baseline -0.6 pts' for the design's flagged cells ('' when none)."""
    mine = conv[conv["unconverged"]]
    n, structure = int(row["group_order"]), row["repeat_structure"]
    mine = mine[
        (mine["arm"] == "plain")
        | ((mine["arm"] == "gcnn") & (mine["design_n"] == n))
        | ((mine["arm"] == "repeat") & (mine["design_n"] == n) & (mine["design_structure"] == structure))
    ]
    labels = []
    for c in mine.itertuples():
        arm = runs[(runs["arm"] == c.arm) & (runs["group_order"] == (c.design_n if c.arm != "plain" else 1))]
        name = (arm["model_name"].iloc[0] if len(arm) else "") or (
            c.arm + (f" C{c.design_n}" if c.arm != "plain" else "")
        )
        labels.append(f"{name} {100 * c.mean_change:+.1f} pts")
    return "; ".join(labels)


PILOT_SEEDS = 3
PILOT_HALF_WIDTH = 0.10  # the seeds for a +-10-point delta interval of the share


def _pilot(runs: pd.DataFrame, table: pd.DataFrame) -> list[int]:
    """Per design, the seeds per arm that stats.seeds_needed asks for from the step's first
    PILOT_SEEDS seeds (-1: not computable, e.g. no gain)."""
    pilot = runs[runs["seed"] < PILOT_SEEDS]
    try:
        needed = stats.seeds_needed(pilot, PILOT_HALF_WIDTH)
    except ValueError:
        return [-1] * len(table)
    by_design = {(int(r.group_order), r.repeat_structure): int(r.seeds_needed) for r in needed.itertuples()}
    return [by_design.get((int(t.group_order), t.repeat_structure), -1) for t in table.itertuples()]


def analyse_bridge(root: Path) -> BridgeReport:
    """Every number of the bridge report, from the steps' results under `root`."""
    rows, missing, notes, read = [], [], [], {}
    for step in STEPS:
        runs, history = read[step.key] = _read(root, step)
        if runs.empty:
            missing.append(step.key)
            continue
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", stats.StatsWarning)
            try:
                table = stats.decompose(runs, n_boot=0, n_perm=0)
            except ValueError as error:  # a step still training: an arm with fewer than 2 seeds
                missing.append(step.key)
                notes.append(f"step {step.key}: not shown, {error}")
                continue
        notes += [
            f"step {step.key}: {w.message}" for w in caught if issubclass(w.category, stats.StatsWarning)
        ]
        controls = table["repeat_structure"].nunique() > 1  # A and B: both repeat controls, named
        table = table.assign(step=step.key, change=step.change)
        table["design"] = [
            f"C{int(t.group_order)}" + (f", {t.repeat_structure} control" if controls else "")
            for t in table.itertuples()
        ]
        table["models"] = [_models(runs, row) for _, row in table.iterrows()]
        table["n"] = table[["n_plain", "n_repeat", "n_gcnn"]].min(axis=1)
        table["pilot"] = _pilot(runs, table)
        conv = stats.convergence(history, runs)
        table["unconverged"] = [_unconverged(runs, conv, row) for _, row in table.iterrows()]
        for _, t in table.iterrows():
            where = f"step {step.key} ({t['design']})"
            if t["n"] < step.seeds:
                notes.append(f"{where}: {int(t['n'])} of the {step.seeds} planned seeds per arm")
            if t["unconverged"]:
                notes.append(
                    f"{where}: not converged — test error moved by more than "
                    f"{100 * stats.convergence_threshold:.1f} points over the last "
                    f"{100 * stats.convergence_window:.0f}% of epochs ({t['unconverged']})"
                )
        table["up_to"] = False
        shown = table[table["identifiable"].astype(bool)]
        if step.key == "D" and len(shown):
            table["up_to"] = table.index == shown["share_rep"].astype(float).idxmax()
            notes.append(
                f"step D: the largest of {len(shown)} shares over N is biased upward (a maximum of "
                "noisy estimates); each N's share is shown"
            )
        rows.append(table)
    single = {}
    paper_runs, paper_history = read["D"]  # C's and D's runs: every N
    models = paper_runs.groupby("seed")["model_name"].nunique()  # seeds with every model of C and D
    chosen = paper_runs[paper_runs["seed"].isin(models[models == paper_runs["model_name"].nunique()].index)]
    if len(chosen):
        single = {e: stats.single_seed_shares(chosen, paper_history, e, THRESHOLD) for e in ("best", "final")}
    else:
        missing.append("E")
    frame = pd.concat(rows, ignore_index=True) if rows else pd.DataFrame()
    return BridgeReport(frame, single, missing, notes)


COLUMNS = [
    "step", "what changes", "models (learnable parameters)", "seeds (3-seed pilot asks)",
    "error % plain / repeat / G-CNN", "gain total / rep / eq (pts)", "repetition share",
    "95% CI delta", "95% CI Fieller", "converged",
]  # fmt: skip


def bridge_rows(r: BridgeReport) -> list[list[str]]:
    """The step table's cells, one row per step and design; then step E's."""
    out = []
    for _, t in r.rows.iterrows():
        errors = " / ".join(pct(t[f"err_{a}"], 2, unit="") for a in ("plain", "repeat", "gcnn"))
        gains = " / ".join(f"{100 * t[f'gain_{g}']:.2f}" for g in ("total", "rep", "eq"))
        if t["identifiable"]:
            share = pct(t["share_rep"]) + (" (up to)" if t["up_to"] else "")
            delta = format_interval(t["share_rep_lo_delta"], t["share_rep_hi_delta"])
            fieller = format_interval(t["share_rep_lo_fieller"], t["share_rep_hi_fieller"], t["fieller_kind"])
        else:
            share, delta, fieller = "not identifiable", "–", "–"
        step = f"{t['step']} ({t['design']})"
        seeds = f"{int(t['n'])}" + (f" (pilot: {int(t['pilot'])})" if t["pilot"] > 0 else "")
        converged = f"no: {t['unconverged']}" if t["unconverged"] else "yes"
        out.append(
            [
                step,
                t["change"],
                t["models"],
                seeds,
                errors,
                gains,
                share,
                delta,
                fieller,
                converged,
            ]
        )
    for error, shares in r.single.items():
        s = shares.summary.iloc[0] if len(shares.summary) else None
        if s is None:
            continue
        reached = int(round(s["at_or_above"] * s["n"]))
        out.append(
            [
                f"E ({error} epoch)",
                f"the paper's estimator: one seed's {error}-epoch errors, the largest share over N",
                "as C and D",
                str(int(s["n"])),
                "–",
                "–",
                f"median {pct(s['median'])}",
                f"range {pct(s['min'])} to {pct(s['max'])}",
                f"{reached} of {int(s['n'])} seeds at or above {pct(THRESHOLD, 0)}",
                "–",
            ]
        )
    return out


def bridge_sentence(r: BridgeReport) -> str:
    """The bridge's headline: the share at each step, and how often one seed reaches 40%."""
    if r.rows.empty:
        return "The bridge study has no finished step yet."
    parts = []
    for key in ("A", "B", "C", "D"):
        rows = r.rows[(r.rows["step"] == key) & r.rows["identifiable"].astype(bool)]
        if key == "D":
            rows = rows[rows["up_to"]]
        if rows.empty:
            continue
        each = ", ".join(
            f"{pct(t['share_rep'])} ({format_interval(t['share_rep_lo_delta'], t['share_rep_hi_delta'])}, "
            f"{t['design']})"
            for _, t in rows.iterrows()
        )
        parts.append(f"{key} {each}")
    line = (
        "Repetition share of the G-CNN's gain, step by step (95% CI, delta method): " + "; ".join(parts) + "."
    )
    best = r.single.get("best")
    if best is not None and len(best.summary):
        s = best.summary.iloc[0]
        reached = int(round(s["at_or_above"] * s["n"]))
        line += (
            f" E, the paper's estimator (one seed's best-epoch errors, the largest over N): median "
            f"{pct(s['median'])}, {reached} of {int(s['n'])} seeds at or above {pct(THRESHOLD, 0)}."
        )
    if r.missing:
        line += f" Not finished yet: step{'s' if len(r.missing) > 1 else ''} {', '.join(r.missing)}."
    return line


def fig_bridge(r: BridgeReport, ax=None):
    """The repetition share with its 95% CI at each step A -> D on one axis, step E's one-seed
    estimates as dots, and the paper's 40% as a line."""
    fig, ax = _axes(ax, (7, 4.5))
    labels, y = [], 0
    for _, t in r.rows.iterrows():
        labels.append(f"{t['step']}: {t['design']}" + (" (up to)" if t["up_to"] else ""))
        if t["identifiable"]:
            lo, hi, share = t["share_rep_lo_delta"], t["share_rep_hi_delta"], t["share_rep"]
            ax.errorbar(100 * share, y, xerr=[[100 * (share - lo)], [100 * (hi - share)]], fmt="s",
                        color="black" if not t["up_to"] else "C3", capsize=3)  # fmt: skip
        y += 1
    for error, shares in r.single.items():
        values = shares.per_seed["share"].to_numpy(dtype=float)
        values = values[np.isfinite(values)]
        face = "C1" if error == "best" else "none"
        ax.scatter(100 * np.clip(values, -1, 1.5), np.full(len(values), y), s=16, facecolors=face,
                   edgecolors="C1", label=f"E: one seed, {error}-epoch")  # fmt: skip
        labels.append(f"E: one seed ({error} epoch)")
        y += 1
    ax.axvline(100 * THRESHOLD, color="C3", linestyle="--", linewidth=1, label="the paper: up to 40%")
    ax.axvline(0, color="grey", linewidth=0.8)
    ax.set_yticks(range(len(labels)), labels)
    ax.invert_yaxis()
    _decorate(
        ax, "repetition share of the G-CNN's gain (%)", "", "From the paper's 40% to the answer, step by step"
    )
    return fig
