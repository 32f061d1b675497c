"""The report of a ladder of studies (ablate.study.ladder): the repetition share at each step,
one factor changed per step, and the seed paper's one-seed estimator where a step asks for it.

The bridge (studies/bridge.toml, docs/bridge.md) is one ladder: from the paper's "up to 40%" to
this package's answer. `analyse_ladder` reads the steps' results folders and computes every
number once; `ladder_rows`, `ladder_sentence` and `fig_ladder` show them.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ablate import stats
from ablate.models.arms import DEFAULT_ARMS, NOT_APPLICABLE, Design
from ablate.report.plots import axes, decorate
from ablate.report.provenance import code_notes
from ablate.report.retrained import first_training_lines, retrained_notes
from ablate.report.text import fluctuation_note, format_interval, pct, stability_phrase, stability_rule
from ablate.results import StudyResults
from ablate.study.ladder import Ladder, Step
from ablate.study.schema import Study

PILOT_SEEDS = 10  # the pilot of --precision's default two-stage plan (run.pilot_seeds)
PILOT_HALF_WIDTH = 0.10  # the seeds for a +-10-point delta interval of the share
ERRORS = ("best", "final")  # an estimator step's two readings: best-epoch and final-epoch errors


@dataclass
class LadderReport:
    """rows: one per decomposition step and design, with the decomposition's columns
    (stats.decompose) plus step, change, models (names and parameters), design ('C4, matched
    control' where a step has both controls, else 'C4'), n (fewest seeds of an arm), `pilot` (the
    seeds the two-stage plan asks for from seeds 0-9, for a +-10-point interval; -1 when it
    cannot say), `up_to` (the step's largest share, where the step takes one; `up_to_lo`,
    `up_to_hi`, `up_to_k`: its selection-adjusted interval and K), and the share's stability over
    the last epochs (stats.share_stability: `verdict`, `stable_change`, `stable_lo`, `stable_hi`).
    single: per estimator step, the paper's estimator on its `of` step's runs, by "best" and
    "final" errors. missing: steps not finished (no runs, or an arm with fewer than 2 seeds).
    trajectory: stats.share_trajectory of every decomposition step, `line` naming step and design.
    retrained: per step with runs retrained under other code, stats.retrained_pairs (old and new
    test error per run)."""

    ladder: Ladder
    rows: pd.DataFrame
    single: dict[str, dict[str, stats.SingleSeedShares]] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    trajectory: pd.DataFrame = field(default_factory=pd.DataFrame)
    retrained: dict[str, pd.DataFrame] = field(default_factory=dict)

    @property
    def reference(self) -> float:
        return self.ladder.settings.reference


def _of_step(step: Step, runs: pd.DataFrame) -> pd.DataFrame:
    """The rows of `runs` in the step's budget and controls."""
    if step.budget is not None:
        runs = runs[runs["budget"] == step.budget]
    if step.controls is not None:
        runs = runs[(runs["arm"] != "repeat") | runs["repeat_structure"].isin(step.controls)]
    return runs


def _superseded(base: Path, step: Step, studies: tuple[Study, ...]) -> pd.DataFrame:
    """The rows a retraining replaced in the step's studies (superseded/runs.csv), of its cells."""
    frames = [StudyResults(base / s.run.results, s.name).superseded_runs() for s in studies]
    frames = [f for f in frames if len(f)]
    return _of_step(step, pd.concat(frames, ignore_index=True)) if frames else pd.DataFrame()


def _read(base: Path, step: Step, studies: tuple[Study, ...]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The step's ok runs (of its budget and controls) and their history, from its studies'
    results folders under `base` (a run in two folders counted once)."""
    runs, history = [], []
    for study in studies:
        store = StudyResults(base / study.run.results, study.name)
        runs.append(store.runs())
        history.append(store.history())
    runs = pd.concat([frame for frame in runs if len(frame)] or [runs[0]], ignore_index=True).drop_duplicates(
        "run_key"
    )
    history = pd.concat([h for h in history if len(h)] or [history[0]], ignore_index=True)
    history = history.drop_duplicates(["run_key", "epoch"])
    runs = _of_step(step, runs)
    return runs[runs["status"] == "ok"], history[history["run_key"].isin(runs["run_key"])]


def _models(prepared: pd.DataFrame, design: Design) -> str:
    """'plain 19,694 · repeat 19,794 · gcnn 20,108' for one design (preset names where set)."""
    mine = prepared[design.rows(prepared)]
    parts = []
    for arm in DEFAULT_ARMS:
        of_arm = mine[mine["arm"] == arm]
        if len(of_arm):
            name = of_arm["model_name"].iloc[0] or arm
            parts.append(f"{name} {int(of_arm['n_params'].iloc[0]):,}")
    return " · ".join(parts)


DESIGN_COLUMNS = ["budget", "group_order", "repeat_structure"]


def _stability(table: pd.DataFrame, runs: pd.DataFrame, history: pd.DataFrame) -> pd.DataFrame:
    """The step's table with its designs' share stability (stats.share_stability) as verdict,
    stable_change, stable_lo and stable_hi."""
    stability = stats.share_stability(history, runs)[[*DESIGN_COLUMNS, "change", "lo", "hi", "verdict"]]
    stability = stability.rename(columns={"change": "stable_change", "lo": "stable_lo", "hi": "stable_hi"})
    return table.merge(stability, on=DESIGN_COLUMNS, how="left")


def _pilot(runs: pd.DataFrame, table: pd.DataFrame) -> list[int]:
    """Per design, the seeds per arm that the two-stage plan (stats.plan_seeds) asks for from the
    step's seeds 0 .. PILOT_SEEDS - 1, as `python -m ablate.run --precision 10` would (-1: not
    computable, e.g. no gain or too small a pilot)."""
    try:
        plan = stats.plan_seeds(runs, PILOT_HALF_WIDTH, PILOT_SEEDS, max_seeds=10**6)
    except ValueError:
        return [-1] * len(table)
    by_design = {(int(row.group_order), row.repeat_structure): int(row.asked) for row in plan.itertuples()}
    return [by_design.get((int(t.group_order), t.repeat_structure), -1) for t in table.itertuples()]


def _decomposition(step: Step, runs: pd.DataFrame, history: pd.DataFrame, notes: list[str]) -> pd.DataFrame:
    """The step's rows (see LadderReport.rows); ValueError while an arm has fewer than 2 seeds."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", stats.StatsWarning)
        table = stats.decompose(runs, n_boot=0, n_perm=0)
    notes += [f"step {step.key}: {w.message}" for w in caught if issubclass(w.category, stats.StatsWarning)]
    study_file = step.studies[0] if len(step.studies) == 1 else f"STUDY.toml (of {', '.join(step.studies)})"
    notes += [f"step {step.key}: {n}" for n in code_notes(runs, study_file) if n.startswith("code versions")]
    controls = table["repeat_structure"].nunique() > 1  # a step with both repeat controls names them
    designs = [Design.of(row) for _, row in table.iterrows()]
    prepared = stats.prepare(runs)
    table = _stability(table.assign(step=step.key, change=step.change), runs, history)
    table["design"] = [d.name(controls) for d in designs]
    table["models"] = [_models(prepared, d) for d in designs]
    table["n"] = table[["n_plain", "n_repeat", "n_gcnn"]].min(axis=1)
    table["pilot"] = _pilot(runs, table)
    for _, t in table.iterrows():
        where = f"step {step.key} ({t['design']})"
        if step.seeds is not None and t["n"] < step.seeds:
            notes.append(f"{where}: {int(t['n'])} of the {step.seeds} planned seeds per arm")
        if t["verdict"] != "stable":
            notes.append(f"{where}: share not shown stable ({_stable_cell(t)}); {stability_rule()}")
    notes.append(f"step {step.key}: {fluctuation_note(stats.run_fluctuation(history, runs))}")
    table["up_to"] = False
    table["up_to_lo"], table["up_to_hi"], table["up_to_k"] = np.nan, np.nan, 0
    shown = table[table["identifiable"].astype(bool)]
    if step.up_to and len(shown):
        table["up_to"] = table.index == shown["share_rep"].astype(float).idxmax()
        lo, hi, k = stats.selection_interval(table)
        table.loc[table["up_to"], ["up_to_lo", "up_to_hi", "up_to_k"]] = lo, hi, k
        notes.append(
            f"step {step.key}: the largest of {k} shares over {step.up_to} is biased upward (a maximum "
            f"of noisy estimates); its 95% interval adjusted for that selection (Sidak over the {k}) "
            f"is {format_interval(lo, hi)}; each {step.up_to}'s share is shown with its own interval"
        )
    return table


def _single_seed(runs: pd.DataFrame, history: pd.DataFrame, reference: float) -> dict:
    """The paper's one-seed estimator on the seeds that have every model of the runs, by "best"
    and "final" errors; {} when no seed has them all."""
    models = runs.groupby("seed")["model_name"].nunique()
    chosen = runs[runs["seed"].isin(models[models == runs["model_name"].nunique()].index)]
    if chosen.empty:
        return {}
    return {e: stats.single_seed_shares(chosen, history, e, reference) for e in ERRORS}


def analyse_ladder(ladder: Ladder, base: Path = Path(".")) -> LadderReport:
    """Every number of a ladder's report, from its steps' results folders under `base` (the
    folder `python -m ablate.run` ran in)."""
    rows, missing, notes, read, single, trajectories, retrained = [], [], [], {}, {}, [], {}
    for step in ladder.steps:
        if step.estimator:
            runs, history = read[step.of]
            single[step.key] = _single_seed(runs, history, ladder.settings.reference)
            if not single[step.key]:
                missing.append(step.key)
            continue
        runs, history = read[step.key] = _read(base, step, ladder.studies[step.key])
        if runs.empty:
            missing.append(step.key)
            continue
        try:
            rows.append(_decomposition(step, runs, history, notes))
        except ValueError as error:  # a step still training: an arm with fewer than 2 seeds
            missing.append(step.key)
            notes.append(f"step {step.key}: not shown, {error}")
            continue
        trajectories.append(_trajectory(step, runs, history, rows[-1]))
        retrained[step.key] = _retrained(step, runs, _superseded(base, step, ladder.studies[step.key]), notes)
    frame = pd.concat(rows, ignore_index=True) if rows else pd.DataFrame()
    trajectory = pd.concat(trajectories, ignore_index=True) if trajectories else pd.DataFrame()
    retrained = {key: pairs for key, pairs in retrained.items() if len(pairs)}
    return LadderReport(ladder, frame, single, missing, notes, trajectory, retrained)


def _retrained(step: Step, runs: pd.DataFrame, superseded: pd.DataFrame, notes: list[str]) -> pd.DataFrame:
    """The step's retrained runs paired with their first training; their notes and the share
    with the first training (report.retrained) appended to `notes`."""
    pairs = stats.retrained_pairs(runs, superseded)
    if len(pairs):
        notes += [f"step {step.key}: {note}" for note in retrained_notes(pairs)]
        notes += first_training_lines(
            step.key, runs, superseded, pairs, runs["repeat_structure"].nunique() > 1
        )
    return pairs


def _trajectory(step: Step, runs: pd.DataFrame, history: pd.DataFrame, rows: pd.DataFrame) -> pd.DataFrame:
    """stats.share_trajectory of one step, each design's line named 'B (C4, matched control)'."""
    trajectory = stats.share_trajectory(history, runs)
    names = {tuple(r[c] for c in DESIGN_COLUMNS): f"{step.key} ({r['design']})" for _, r in rows.iterrows()}
    return trajectory.assign(
        line=[names.get(tuple(r[c] for c in DESIGN_COLUMNS), step.key) for _, r in trajectory.iterrows()]
    )


COLUMNS = [
    "step", "what changes", "models (learnable parameters)", "seeds (10-seed pilot plans)",
    "error % plain / repeat / G-CNN", "gain total / rep / eq (pts)", "repetition share",
    "95% CI delta", "95% CI Fieller", "share's change over the last 20% of epochs (pts, 95% CI)",
]  # fmt: skip


def _stable_cell(t: pd.Series) -> str:
    """'stable: +0.4 points (-2.0 to 2.9)' for a ladder row."""
    return stability_phrase(
        {"verdict": t["verdict"], "change": t["stable_change"], "lo": t["stable_lo"], "hi": t["stable_hi"]}
    )


def _adjusted(t) -> str:
    """'largest of 3, adjusted 95% CI -9.0% to 36.2%' for a step's "up to" row."""
    return f"largest of {int(t['up_to_k'])}, adjusted 95% CI {format_interval(t['up_to_lo'], t['up_to_hi'])}"


def ladder_rows(report: LadderReport) -> list[list[str]]:
    """The step table's cells, one row per decomposition step and design; then each estimator
    step's, by best- and final-epoch errors."""
    out = []
    for _, t in report.rows.iterrows():
        errors = " / ".join(pct(t[f"err_{a}"], 2, unit="") for a in DEFAULT_ARMS)
        gains = " / ".join(f"{100 * t[f'gain_{g}']:.2f}" for g in ("total", "rep", "eq"))
        if t["identifiable"]:
            share = pct(t["share_rep"]) + (f" (up to: {_adjusted(t)})" if t["up_to"] else "")
            delta = format_interval(t["share_rep_lo_delta"], t["share_rep_hi_delta"])
            fieller = format_interval(t["share_rep_lo_fieller"], t["share_rep_hi_fieller"], t["fieller_kind"])
        else:
            share, delta, fieller = "not identifiable", NOT_APPLICABLE, NOT_APPLICABLE
        seeds = f"{int(t['n'])}" + (f" (plan: {int(t['pilot'])})" if t["pilot"] > 0 else "")
        step = f"{t['step']} ({t['design']})"
        out.append(
            [step, t["change"], t["models"], seeds, errors, gains, share, delta, fieller, _stable_cell(t)]
        )
    for key, by_error in report.single.items():
        step = report.ladder.step(key)
        for error, shares in by_error.items():
            if shares.summary.empty:
                continue
            s = shares.summary.iloc[0]
            reached = int(round(s["at_or_above"] * s["n"]))
            out.append(
                [
                    f"{key} ({error} epoch)",
                    step.change.format(error=error),
                    f"as step {step.of}",
                    str(int(s["n"])),
                    NOT_APPLICABLE,
                    NOT_APPLICABLE,
                    f"median {pct(s['median'])}",
                    f"range {pct(s['min'])} to {pct(s['max'])}",
                    f"{reached} of {int(s['n'])} seeds at or above {pct(report.reference, 0)}",
                    NOT_APPLICABLE,
                ]
            )
    return out


def ladder_sentence(report: LadderReport) -> str:
    """The ladder's headline: the share at each step (a step's "up to" where it takes one), and
    how often one seed reaches the reference share."""
    if report.rows.empty:
        return f"The {report.ladder.name} ladder has no finished step yet."
    parts = []
    for step in report.ladder.steps:
        rows = report.rows[(report.rows["step"] == step.key) & report.rows["identifiable"].astype(bool)]
        if step.up_to:
            rows = rows[rows["up_to"]]
        if rows.empty:
            continue
        each = ", ".join(
            f"{pct(t['share_rep'])} ({format_interval(t['share_rep_lo_delta'], t['share_rep_hi_delta'])}, "
            f"{t['design']}" + (f"; {_adjusted(t)})" if t["up_to"] else ")")
            for _, t in rows.iterrows()
        )
        parts.append(f"{step.key} {each}")
    line = (
        "Repetition share of the G-CNN's gain, step by step (95% CI, delta method): " + "; ".join(parts) + "."
    )
    for key, by_error in report.single.items():
        best = by_error.get("best")
        if best is not None and len(best.summary):
            s = best.summary.iloc[0]
            reached = int(round(s["at_or_above"] * s["n"]))
            line += (
                f" {key}, {report.ladder.step(key).change.format(error='best')}: median "
                f"{pct(s['median'])}, {reached} of {int(s['n'])} seeds at or above "
                f"{pct(report.reference, 0)}."
            )
    moving = report.rows[report.rows["verdict"] != "stable"]
    if len(moving):
        steps = ", ".join(f"{t['step']} ({t['design']}): {t['verdict']}" for _, t in moving.iterrows())
        line += f" Not shown stable over the last epochs (table): {steps}."
    if report.missing:
        line += (
            f" Not finished yet: step{'s' if len(report.missing) > 1 else ''} {', '.join(report.missing)}."
        )
    return line


def fig_ladder(report: LadderReport, ax=None):
    """The repetition share with its 95% CI at each decomposition step on one axis, the estimator
    steps' one-seed estimates as dots, and the reference share as a line."""
    fig, ax = axes(ax, (7, 4.5))
    labels, y = [], 0
    for _, t in report.rows.iterrows():
        labels.append(f"{t['step']}: {t['design']}" + (" (up to)" if t["up_to"] else ""))
        if t["identifiable"]:
            lo, hi, share = t["share_rep_lo_delta"], t["share_rep_hi_delta"], t["share_rep"]
            ax.errorbar(100 * share, y, xerr=[[100 * (share - lo)], [100 * (hi - share)]], fmt="s",
                        color="black" if not t["up_to"] else "C3", capsize=3)  # fmt: skip
            if t["up_to"]:  # the interval adjusted for taking the largest of K
                label = f"up to: adjusted for the largest of {int(t['up_to_k'])}"
                ax.plot([100 * t["up_to_lo"], 100 * t["up_to_hi"]], [y + 0.25, y + 0.25], color="C3",
                        linewidth=1, linestyle=":", label=label)  # fmt: skip
        y += 1
    for key, by_error in report.single.items():
        for error, shares in by_error.items():
            values = shares.per_seed["share"].to_numpy(dtype=float)
            values = values[np.isfinite(values)]
            face = "C1" if error == "best" else "none"
            ax.scatter(100 * np.clip(values, -1, 1.5), np.full(len(values), y), s=16, facecolors=face,
                       edgecolors="C1", label=f"{key}: one seed, {error}-epoch")  # fmt: skip
            labels.append(f"{key}: one seed ({error} epoch)")
            y += 1
    ax.axvline(
        100 * report.reference,
        color="C3",
        linestyle="--",
        linewidth=1,
        label=report.ladder.settings.reference_label,
    )
    ax.axvline(0, color="grey", linewidth=0.8)
    ax.set_yticks(range(len(labels)), labels)
    ax.invert_yaxis()
    title = report.ladder.settings.title
    decorate(ax, "repetition share of the G-CNN's gain (%)", "", title[:1].upper() + title[1:])
    return fig
