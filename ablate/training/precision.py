"""`python -m ablate.run STUDY --precision 10`: seeds planned to a precision (docs/stats.md).

The pilot, seeds 0 .. pilot_seeds - 1 of every arm, trains first. stats.plan_seeds then asks, per
design, for the seeds per arm that the repetition share's 95% interval needs to be +-precision
points wide (a two-stage plan made from the pilot alone, so every rerun plans the same), capped by
max_seeds. The seeds then train in rounds of round_seeds, each round one run_study over the grid's
next seeds: a study killed mid-round loses nothing and the same command resumes it. An arm shared
by several designs (the plain CNN of both controls) trains to the largest of their plans; every
seed of [train].seeds trains too.
"""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd

from ablate import stats
from ablate.errors import StudyError
from ablate.models.arms import Design
from ablate.results import StudyResults
from ablate.study.grid import RunSpec, expand_grid
from ablate.study.schema import Study, with_overrides
from ablate.training.driver import Outcome, run_study
from ablate.training.executors import Executor


def grid_of_seeds(study: Study, seeds: list[int], source: str) -> list[RunSpec]:
    """The study's grid with every budget trained on `seeds` (run keys as the study's own)."""
    return expand_grid(with_overrides(study, source, train={"seeds": seeds, "budget_seeds": {}}), source)


def pilot_runs(study: Study, pilot_grid: list[RunSpec]) -> pd.DataFrame:
    """The finished ok runs of the pilot's grid."""
    runs = StudyResults(study.run.results, study.name).runs()
    return runs[runs["run_key"].isin({s.run_key for s in pilot_grid}) & (runs["status"] == "ok")]


def plan_now(study: Study, source: str) -> list[str]:
    """For --dry-run: the plan's lines when the pilot has finished, else one line saying so."""
    r = study.run
    pilot_grid = grid_of_seeds(study, list(range(r.pilot_seeds)), source)
    runs = pilot_runs(study, pilot_grid)
    if len(runs) < len(pilot_grid):
        return [f"plan: made once the pilot's {len(pilot_grid)} runs finished ({len(runs)} have)"]
    try:
        plan = stats.plan_seeds(runs, r.precision / 100, r.pilot_seeds, r.max_seeds, share=r.precision_share)
    except ValueError as error:
        return [f"plan: none from the pilot ({error})"]
    return plan_lines(plan, r.precision, r.pilot_seeds, r.max_seeds, r.precision_share)


def cell_targets(pilot_grid: list[RunSpec], pilot_runs: pd.DataFrame, plan: pd.DataFrame) -> dict:
    """Seeds per (budget, model) cell: the largest plan among the designs the cell's pilot runs
    belong to (Design.rows), at least the pilot's size."""
    prepared = stats.prepare(pilot_runs)
    wanted: dict[str, int] = {}
    for _, row in plan.iterrows():
        for key in prepared.loc[Design.of(row).rows(prepared), "run_key"]:
            wanted[key] = max(wanted.get(key, 0), int(row["seeds"]))
    targets: dict[tuple, int] = {}
    for spec in pilot_grid:
        cell = (spec.budget, spec.model)
        targets[cell] = max(targets.get(cell, 0), wanted.get(spec.run_key, 0))
    return targets


SHARE_NAMES = {"rep": "repetition", "struct": "sharing-structure", "sym": "symmetry"}


def plan_lines(
    plan: pd.DataFrame, precision: float, pilot: int, max_seeds: int, share: str = "rep"
) -> list[str]:
    """One line per design: what its pilot asks and what will train."""
    lines = []
    for _, row in plan.iterrows():
        asked = int(row["asked"])
        what = f"asks {asked}" if asked > 0 else "shows no gain, so no number of seeds is predicted"
        capped = " (capped by run.max_seeds)" if asked < 0 or asked > max_seeds else ""
        lines.append(
            f"plan {Design.of(row).label}: the {pilot}-seed pilot ({SHARE_NAMES[share]} share "
            f"{100 * row[f'share_{share}']:.1f}%) "
            f"{what} for +-{precision:g} points; training seeds 0-{int(row['seeds']) - 1}{capped}"
        )
    return lines


def run_to_precision(
    study: Study,
    source: str,
    executor: Callable[[], Executor],
    force: bool = False,
    on_epoch: Callable[[dict], None] | None = None,
    **options,
) -> Outcome:
    """Train the pilot, plan the seeds from it and train them in rounds; the last round's Outcome
    (driver.RunsUnfinished when a round did not finish). `executor` makes one executor per round;
    `options` go to each run_study (retrain, recorded)."""
    settings = study.run
    pilot = list(range(settings.pilot_seeds))
    pilot_grid = grid_of_seeds(study, pilot, source)
    outcome = run_study(study, force, on_epoch, source, executor(), grid=pilot_grid, **options)
    runs = pilot_runs(study, pilot_grid)
    try:
        plan = stats.plan_seeds(
            runs,
            settings.precision / 100,
            settings.pilot_seeds,
            settings.max_seeds,
            share=settings.precision_share,
        )
    except ValueError as error:
        raise StudyError(f"{source}: run.precision: no plan from the pilot ({error})") from None
    for line in plan_lines(
        plan, settings.precision, settings.pilot_seeds, settings.max_seeds, settings.precision_share
    ):
        print(line)
    targets = cell_targets(pilot_grid, runs, plan)
    listed = set(study.train.all_seeds)
    top = max([*targets.values(), *[s + 1 for s in listed]])
    start = settings.pilot_seeds
    while start < top:
        seeds = list(range(start, min(start + settings.round_seeds, top)))
        grid = [
            spec
            for spec in grid_of_seeds(study, seeds, source)
            if spec.seed < targets.get((spec.budget, spec.model), 0) or spec.seed in listed
        ]
        print(f"round: seeds {seeds[0]}-{seeds[-1]} ({len(grid)} runs)")
        outcome = run_study(study, force, on_epoch, source, executor(), grid=grid, **options)
        start += settings.round_seeds
    for line in reached_lines(
        StudyResults(settings.results, study.name).runs(), settings.precision, settings.precision_share
    ):
        print(line)
    return outcome


def reached_lines(runs: pd.DataFrame, precision: float, share: str = "rep") -> list[str]:
    """One line per design: the share's 95% delta interval on every ok seed and its half-width."""
    table = stats.decompose(runs[runs["status"] == "ok"], n_boot=0, n_perm=0)
    lines = []
    for _, row in table.iterrows():
        where = Design.of(row).label
        if not row["identifiable"]:
            lines.append(f"reached {where}: no interval, the total gain is not clearly non-zero")
            continue
        lo, hi = row[f"share_{share}_lo_delta"], row[f"share_{share}_hi_delta"]
        half = 100 * (hi - lo) / 2
        lines.append(
            f"reached {where}: {SHARE_NAMES[share]} share {100 * row[f'share_{share}']:.1f}% "
            f"({100 * lo:.1f}% to {100 * hi:.1f}%), "
            f"half-width {half:.1f} points ({'within' if half <= precision else 'wider than'} "
            f"+-{precision:g}) with {int(row[['n_plain', 'n_repeat', 'n_gcnn']].min())} seeds per arm"
        )
    return lines
