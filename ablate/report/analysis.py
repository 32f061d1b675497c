"""A study's report computed before anything is drawn: `analyse` reads results/<study>/ and
returns a `StudyReport` holding every number, frame and note the tables and figures show."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ablate import stats
from ablate.errors import DataError, ResultsError
from ablate.models.arms import ARM_LABELS, ARMS, GROUPED_ARMS, TRIVIAL_GROUP, Design, Group
from ablate.models.paper import PAPER_ORDER, PAPER_SEED
from ablate.report import text
from ablate.report.provenance import code_notes, data_notes, what_ran_notes
from ablate.report.retrained import retrained_notes
from ablate.results import HISTORY_COLUMNS, StudyResults
from ablate.study.grid import study_shape

HALF_WIDTHS = (0.10, 0.05)  # seeds_needed is reported for these half-widths of the share interval
MIN_SINGLE_SEEDS = 3  # the single-seed distribution is shown from this many seeds per arm
DATASET_LABELS = {
    "mnist-rot": "MNIST-rot",
    "mnist": "rotated MNIST (torchvision)",
    "embedded": "rotated MNIST, 5k embedded digits",
}


@dataclass
class PaperSummary:
    """A preset study's models (rows in PAPER_ORDER): model, arm, group_order, n_params,
    final-epoch test error (n, mean, sd, lo, hi), best-epoch test error (best_mean, best_sd;
    selected on the test set), invariance_error (under its C_N's exact turns); and the repetition
    shares computed as the paper computes them (stats.point_shares) on final means and on one
    seed's best epochs."""

    models: pd.DataFrame
    shares_final: pd.DataFrame
    shares_paper: pd.DataFrame
    paper_seed: int
    width: float = 1.0  # the preset's width multiplier (preset_width)


def _paper_summary(runs: pd.DataFrame, history: pd.DataFrame, invariance: pd.DataFrame) -> PaperSummary:
    ok = runs[runs["status"] == "ok"]
    best_runs = stats.best_epoch(history, ok)
    final = stats.arm_summary(ok, by="model_name").set_index("model_name")
    best = stats.arm_summary(best_runs, by="model_name").set_index("model_name")
    first = ok.groupby("model_name")[["arm", "group_order", "n_params"]].first()
    # each model under its own C_N's exact turns; the baseline under the smallest N's (all are C4)
    own = invariance.drop_duplicates("run_key").merge(ok[["run_key", "model_name"]], on="run_key")
    invariance = own.groupby("model_name")["exact"].mean()
    names = [m for m in PAPER_ORDER if m in final.index]
    models = (
        final.loc[names, ["n", "mean", "sd", "lo", "hi"]]
        .join(first)
        .assign(best_mean=best["mean"], best_sd=best["sd"], invariance_error=invariance)
    )
    seed = PAPER_SEED if (ok["seed"] == PAPER_SEED).any() else int(ok["seed"].min())
    return PaperSummary(
        models.reset_index(names="model"),
        stats.point_shares(ok),
        stats.point_shares(best_runs[best_runs["seed"] == seed]),
        seed,
        float(ok["preset_width"].iloc[0]),
    )


def _paper_notes(paper: PaperSummary) -> list[str]:
    m = paper.models
    base = (
        float(m.loc[m["model"] == "baseline", "n_params"].iloc[0])
        if (m["model"] == "baseline").any()
        else None
    )
    notes = []
    if base:
        gaps = 100 * (m["n_params"] / base - 1)
        notes.append(
            "the preset's models are not parameter-matched (as in the paper): learnable parameters "
            f"from {int(m['n_params'].min()):,} to {int(m['n_params'].max()):,}, "
            f"{gaps.min():+.0f}% to {gaps.max():+.0f}% of the baseline's {int(base):,}"
        )
    return notes


@dataclass
class StudyReport:
    """Everything the figures and tables of one study need."""

    name: str
    runs: pd.DataFrame
    history: pd.DataFrame
    dataset: str
    group_orders: list[int]
    summary: pd.DataFrame  # stats.arm_summary by model variant
    table: pd.DataFrame | None  # stats.decompose over the budgets with >= 2 ok seeds per arm
    pooled: pd.DataFrame | None
    notes: list[str] = field(default_factory=list)
    table_log: pd.DataFrame | None = None  # the same decomposition on log test error
    seeds: dict[float, pd.DataFrame] = field(default_factory=dict)  # stats.seeds_needed per half-width
    variants: list[str] = field(default_factory=list)  # model variants (runs' "variant"), in order
    convergence: pd.DataFrame | None = None  # stats.convergence per cell (with its variant): runs' noise
    stability: pd.DataFrame | None = None  # stats.share_stability per design: the convergence verdict
    trajectory: pd.DataFrame | None = None  # stats.share_trajectory: the share over the last epochs
    paper: PaperSummary | None = None  # a preset study's models, in the paper's shape
    trends: dict[str, pd.DataFrame] = field(default_factory=dict)  # stats.seed_trends by seed / finished_at
    single_seed: dict[str, stats.SingleSeedShares] = field(default_factory=dict)  # by "best" / "final"
    group: str = TRIVIAL_GROUP.kind  # C_N or D_N
    invariance: pd.DataFrame | None = None  # stats.design_invariance, with each run's variant
    invariance_gaps: pd.DataFrame | None = None  # stats.invariance_gaps: did an arm learn the symmetry
    orbit: pd.DataFrame | None = None  # stats.orbit_errors: test-time averaging over each design's group
    wrong_groups: dict[int, str] = field(default_factory=dict)  # group order -> the wrong arm's group

    @property
    def unstable(self) -> dict[int, list[str]]:
        """Budget -> labels of the designs whose share is not shown stable at the end of training."""
        if self.stability is None:
            return {}
        budgets = self.stability.loc[self.stability["verdict"] != "stable", "budget"]
        return {int(b): text.unstable_designs(self.stability, b) for b in sorted(set(budgets))}

    @property
    def n_seeds(self) -> str:
        counts = self.summary["n"]
        return (
            str(int(counts.min()))
            if counts.min() == counts.max()
            else f"{int(counts.min())}–{int(counts.max())}"
        )

    @property
    def group_label(self) -> str:
        """'C4', 'C2/C4/C8' or 'D4': the G-CNNs' groups."""
        return Group.labels(self.group, self.group_orders)

    @property
    def title(self) -> str:
        return f"{self.dataset} · {self.group_label} · {self.n_seeds} seeds per arm"


def _read(directory: Path) -> tuple[StudyResults, pd.DataFrame, pd.DataFrame]:
    """The study's store, runs and history; ResultsError when there is nothing to report."""
    store = StudyResults(directory.parent, directory.name)
    runs, history = store.runs(), store.history()
    if runs.empty:
        raise ResultsError(f"{store.runs_path}: no finished runs yet")
    unknown = sorted(set(runs["arm"]) - set(ARMS))
    if unknown:
        raise ResultsError(
            f"{store.runs_path}: expected arms {', '.join(ARMS)}, found {', '.join(map(str, unknown))}"
        )
    return store, runs, history


def _statistics(runs: pd.DataFrame, complete: list, n_boot: int, n_perm: int, notes: list[str]) -> dict:
    """The decomposition (points and log scales), seeds_needed per half-width and the pooled share
    over the budgets with >= 2 ok seeds per arm, as StudyReport fields; StatsWarnings to `notes`."""
    if not complete:
        return {}
    subset = runs[runs["budget"].isin(complete)]
    out = {"pooled": None}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", stats.StatsWarning)
        out["table"] = stats.decompose(subset, n_boot=n_boot, n_perm=n_perm)
        out["table_log"] = stats.decompose(subset, n_boot=0, n_perm=0, scale="log")
        try:
            out["seeds"] = {h: stats.seeds_needed(subset, half_width=h) for h in HALF_WIDTHS}
        except stats.PilotTooSmall as error:
            notes.append(f"no seed plan: {error}")
        try:
            out["pooled"] = stats.pooled(subset, by_budget_trend=len(complete) > 1)
        except ValueError as error:
            notes.append(f"no pooled estimate: {error}")
    notes += sorted({str(w.message) for w in caught if issubclass(w.category, stats.StatsWarning)})
    for frame in (out["table"], out["table_log"]):
        frame["design"] = _design_labels(frame)
    return out


def _dataset_label(runs: pd.DataFrame, saved) -> str:
    """'MNIST-rot', 'digits.npz (32x32, 3 channels)', ..."""
    source = str(runs["dataset"].iloc[0]) if "dataset" in runs else "unknown data"
    dataset = DATASET_LABELS.get(source, source)
    size, channels = _input_shape(saved, runs)
    shape = f"{size}x{size}" if size else "size unknown"
    if saved is not None and saved.data.path:
        dataset = f"{Path(saved.data.path).name} ({shape}, {channels} channel{'s' if channels > 1 else ''})"
    elif size != 28:
        dataset += f" ({shape})"
    return dataset


def _invariance(runs: pd.DataFrame, saved, notes: list[str]) -> pd.DataFrame:
    """stats.design_invariance with each run's variant; notes on what it measures: rows from
    before the per-group columns, groups without an exact transformation, a G-CNN that is not
    exactly invariant (and odd inputs, where they explain it)."""
    table = stats.design_invariance(runs).merge(runs[["run_key", "variant"]], on="run_key")
    if table["legacy"].any():
        notes.append(
            f"invariance: {table.loc[table['legacy'], 'run_key'].nunique()} runs predate the per-group "
            "columns (their invariance_error: a 90-degree turn, and the mirror for D_N, whatever the "
            "design's group), so only the gaps under turns by random angles include them"
        )
    for label in sorted(set(table["group"])):
        note = Group.parse(label).no_exact_note
        if note:
            notes.append(f"invariance: {note}")
    gcnn = table[(table["arm"] == "gcnn") & ~table["legacy"] & (table["exact"] > 0)]
    if len(gcnn):
        size, _ = _input_shape(saved, runs)
        odd = (
            f" (inputs are {size}x{size}: pooled maps are odd, so turns are inexact after pooling)"
            if size and size % 2
            else ""
        )
        notes.append(
            f"invariance: {len(gcnn)} G-CNN runs change predictions under their own group's exact "
            f"transformations (up to {100 * gcnn['exact'].max():.2f}%){odd}"
        )
    return table


def _convergence(history: pd.DataFrame, runs: pd.DataFrame, complete: list, notes: list[str]) -> dict:
    """The convergence fields of a StudyReport (none without history): per cell its runs' movement
    (stats.convergence, a note about noise), per design the share's stability over the last epochs
    (stats.share_stability: the verdict, noted where not stable) and its trajectory."""
    if history.empty:
        notes.append("no history of epochs (history.csv empty, or a runs table alone): no learning curves")
        return {}
    conv = stats.convergence(history, runs)
    fluctuation = stats.run_fluctuation(history, runs)
    if np.isfinite(fluctuation):
        notes.append(text.fluctuation_note(fluctuation))
    if conv["unknown"].any():
        notes.append(
            f"convergence not checked for {int(conv['unknown'].sum())} cells: no test error was evaluated "
            f"before the last {100 * stats.convergence_window:.0f}% of their epochs ([train].eval_every)"
        )
    subset = runs[runs["budget"].isin(complete)]
    if not complete:
        return {"convergence": conv}
    stability = stats.share_stability(history, subset)
    flagged = text.unstable_designs(stability)
    if flagged:
        shown = f"{len(flagged)} of {len(stability)} shares not shown stable"
        notes.append(f"{shown} ({'; '.join(flagged)}); {text.stability_rule()}")
    return {
        "convergence": conv,
        "stability": stability,
        "trajectory": stats.share_trajectory(history, subset),
    }


def analyse(directory: Path, n_boot: int = 2000, n_perm: int = 5000) -> StudyReport:
    """Read one study's results and compute its statistics, noting what is missing or too thin."""
    store, runs, history = _read(directory)
    saved = store.saved_study()
    notes = (
        data_notes(runs, store)
        + what_ran_notes(runs, store, saved)
        + code_notes(runs, str(store.dir / "study.toml"))
        + retrained_notes(stats.retrained_pairs(runs, store.superseded_runs()))
    )
    return analyse_runs(runs, history, directory.name, notes, saved, n_boot, n_perm)


def analyse_runs(
    runs: pd.DataFrame,
    history: pd.DataFrame | None = None,
    name: str = "runs",
    notes: list[str] | None = None,
    saved=None,
    n_boot: int = 2000,
    n_perm: int = 5000,
) -> StudyReport:
    """A report's numbers from a runs table (runs.csv's columns: results.read_runs, or your own
    table through results.user_runs) and its history (empty: no learning curves, final-epoch
    errors only); `saved`, the study it ran, where known."""
    notes = list(notes or [])
    history = history if history is not None else pd.DataFrame(columns=HISTORY_COLUMNS)
    diverged = int((runs["status"] != "ok").sum())
    if diverged:
        notes.append(f"{diverged} runs did not finish ok (diverged) and are left out of the statistics")
    kinds = runs.loc[runs["arm"].isin(GROUPED_ARMS), "group"].astype(str)
    group = next((k for k in kinds if k), TRIVIAL_GROUP.kind)  # C_N or D_N: one kind per study
    runs, variants = _with_variants(runs)
    history = history.merge(runs[["run_key", "variant"]], on="run_key", how="inner")
    summary = stats.arm_summary(runs, by="variant")
    complete = stats.complete_budgets(runs)
    thin = [b for b in sorted(summary["budget"].unique()) if b not in complete]
    if thin:
        notes.append(
            "intervals and tests need at least two ok seeds of every arm; point estimates only "
            f"for budget{'s' if len(thin) > 1 else ''} {', '.join(f'{int(b):,}' for b in thin)}"
        )
    numbers = _statistics(runs, complete, n_boot, n_perm, notes)
    orders = runs.loc[runs["arm"].isin(GROUPED_ARMS), "group_order"]
    invariance = _invariance(runs, saved, notes)
    controls = _controls(runs, notes)
    paper = None
    if runs.get("model_name", pd.Series(dtype=str)).fillna("").ne("").any():
        paper = _paper_summary(runs, history, invariance)
        notes += _paper_notes(paper)
    dataset = _dataset_label(runs, saved)
    convergence = _convergence(history, runs, complete, notes)
    single = {}
    if numbers and int(summary["n"].max()) >= MIN_SINGLE_SEEDS:
        errors = ("best", "final") if not history.empty else ("final",)
        single = {
            e: stats.single_seed_shares(runs[runs["budget"].isin(complete)], history, e) for e in errors
        }
    return StudyReport(
        name=name, runs=runs, history=history, dataset=dataset,
        group_orders=sorted({int(n) for n in orders}) or [4], summary=summary,
        table=numbers.get("table"), pooled=numbers.get("pooled"), notes=notes,
        table_log=numbers.get("table_log"), seeds=numbers.get("seeds", {}), variants=variants,
        paper=paper, single_seed=single, group=group, invariance=invariance, **controls, **convergence,
        trends={by: stats.seed_trends(runs, by=by) for by in stats.TREND_ORDERS},
    )  # fmt: skip


def wrong_group_notes(runs: pd.DataFrame) -> list[str]:
    """A note per wrong group that holds some of its design group's exact transformations (D2
    holds C4's half turn: only partly wrong) or differs in order (|G| unequal: compute differs)."""
    notes = []
    wrong = runs.loc[runs["arm"] == "wrong", ["group", "group_order", "wrong_group"]].drop_duplicates()
    for kind, order, label in wrong.itertuples(index=False):
        design, own = Group(kind, int(order)), Group.parse(label)
        shared = [t.name for t in design.transformations if t in set(own.transformations)]
        if shared:
            notes.append(
                f"the wrong group {own.label} holds {' and '.join(shared)} of {design.label}: it is only "
                "partly wrong, so its symmetry share understates what the full group adds"
            )
        if own.size != design.size:
            notes.append(
                f"the wrong group {own.label} has |G| = {own.size}, {design.label} {design.size}: their "
                "compute differs"
            )
    return notes


def _controls(runs: pd.DataFrame, notes: list[str]) -> dict:
    """The StudyReport fields of a study with the wrong-group or wide arm (empty otherwise): the
    learned-invariance gaps, the orbit-averaged errors and each order's wrong group; notes on
    wrong groups that are only partly wrong."""
    if not runs["arm"].isin(["wrong", "wide"]).any():
        return {}
    notes += wrong_group_notes(runs)
    wrong = runs.loc[runs["arm"] == "wrong", ["group_order", "wrong_group"]].drop_duplicates()
    return {
        "invariance_gaps": stats.invariance_gaps(runs),
        "orbit": stats.orbit_errors(runs),
        "wrong_groups": {int(n): str(label) for n, label in wrong.itertuples(index=False)},
    }


def _input_shape(saved, runs: pd.DataFrame) -> tuple[int | None, int]:
    """(image size, channels) the study's runs saw: from its data (28x28 grey for the built-in
    sources; a user's files are read when they are here, else the size is None unless set)."""
    channels = int(runs["channels"].iloc[0])
    if saved is None:
        return 28, channels
    try:
        return study_shape(saved)[1], channels
    except DataError:
        return saved.data.size or saved.data.pad_to, channels


def _with_variants(runs: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Runs with a "variant" label per model kind (arm, plus N and control where a study varies
    them), and the labels in display order."""
    orders = runs.loc[runs["arm"].isin(GROUPED_ARMS), "group_order"].nunique() > 1
    several = runs.loc[runs["arm"] == "repeat", "repeat_structure"].nunique() > 1

    def label(row) -> str:
        text = ARM_LABELS[row["arm"]]
        if orders and row["arm"] in GROUPED_ARMS:
            text += f" {Group(row['group'], row['group_order']).label}"
        if several and row["arm"] == "repeat":
            text += f" ({row['repeat_structure']})"
        return text

    runs = runs.assign(variant=runs.apply(label, axis=1))
    order = {arm: i for i, arm in enumerate(ARMS)}
    keys = runs.drop_duplicates("variant").assign(
        rank=lambda d: d["arm"].map(order), control=lambda d: d["repeat_structure"].eq("matched")
    )
    keys = keys.sort_values(["rank", "group_order", "control"])
    return runs, list(keys["variant"])


def _design_labels(table: pd.DataFrame) -> list[str]:
    """Short labels of a decomposition's rows: the budget, plus N and control where they vary."""
    orders, repeat_structures = table["group_order"].nunique() > 1, table["repeat_structure"].nunique() > 1
    return [Design.of(row).short(orders, repeat_structures) for _, row in table.iterrows()]
