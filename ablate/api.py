"""The Python interface: `from ablate import triplet, run_study, build_report, load_runs`
(loaded on first use, so `import ablate` stays light). `ablate.run` and `ablate.report` are the
command-line modules; these functions do what they do, from Python."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
from torch import nn

from ablate.errors import AblateError, StudyError
from ablate.models.arms import DEFAULT_STRUCTURE, Group
from ablate.models.build import build_arm, solve_triplet
from ablate.models.builder import resolve
from ablate.models.counting import count_params
from ablate.models.spec import ArmSpec
from ablate.results import StudyResults
from ablate.study.schema import Study, load_study


@dataclass
class Triplet:
    """The matched triplet of one network at one budget: nn.Modules mapping images
    (B, in_channels, size, size) to logits (B, classes), their ArmSpecs and learnable counts;
    `wrong` (the G-CNN on a wrong group) and `wide` (the G-CNN's widths, every weight free) where
    asked for, else None."""

    plain: nn.Module
    repeat: nn.Module
    gcnn: nn.Module
    specs: dict[str, ArmSpec]
    wrong: nn.Module | None = None
    wide: nn.Module | None = None

    @property
    def counts(self) -> dict[str, int]:
        """Learnable parameters per arm present."""
        return {arm: count_params(getattr(self, arm)) for arm in self.specs}


def triplet(
    builder: str | Callable,
    budget: int,
    group: Group | str | object = "C4",
    in_channels: int = 1,
    classes: int = 10,
    size: int = 28,
    repeat_structure: str = DEFAULT_STRUCTURE,
    repeat_mode: str = "swish",
    tolerance: float = 0.02,
    arms: Sequence[str] = ("plain", "repeat", "gcnn"),
    wrong_group: Group | str | object | None = None,
) -> Triplet:
    """The plain, repeat and G-CNN arms of `builder` (a function with the builder signature of
    ablate.models.builder, or its "package.module:function" path) at `budget` learnable
    parameters, each within `tolerance`; the G-CNN on `group` (a Group, its label "C4", "D1", ...,
    or an escnn gspace), checked invariant at init on random (size x size) images. `arms` may add
    "wrong" (the G-CNN on `wrong_group`, solved to the budget) and "wide" (not budget-matched).
    Fresh initialisations from torch's random state, which solving the widths leaves untouched:
    torch.manual_seed(s) before the call gives the same models whether or not this process has
    solved the triplet before."""
    try:
        group = Group.parse(group)
        wrong_group = Group.parse(wrong_group) if wrong_group is not None else None
    except ValueError as error:
        raise StudyError(f"ablate.triplet: {error}") from None
    build = resolve(builder) if isinstance(builder, str) else builder
    with torch.random.fork_rng(devices=[]):  # the solve's builds draw weights; the caller's state stays
        specs = solve_triplet(
            budget, builder=builder, group=group, repeat_structure=repeat_structure,
            repeat_mode=repeat_mode, tolerance=tolerance, channels=in_channels, classes=classes, size=size,
            arms=tuple(arms), wrong_group=wrong_group,
        )  # fmt: skip
    return Triplet(**{arm: build_arm(spec, build) for arm, spec in specs.items()}, specs=specs)


def _study(study: str | Path | Study) -> tuple[Study, str]:
    return (study, "<study>") if isinstance(study, Study) else (load_study(study), str(study))


def run_study(study: str | Path | Study, jobs: int | None = None, force: bool = False) -> Path:
    """Train every missing run of a study (a file or a loaded Study), as `python -m ablate.run`
    does (to its precision where [run] precision is set); returns its results folder.
    training.driver.RunsUnfinished when a run did not finish; bad input raises the AblateError
    the command line reports in one line."""
    from ablate.training.driver import run_study as train
    from ablate.training.executors import local_executor
    from ablate.training.precision import run_to_precision

    loaded, source = _study(study)
    if loaded.run.precision is not None:
        run_to_precision(loaded, source, lambda: local_executor(loaded, jobs), force=force)
    else:
        train(loaded, force=force, source=source, executor=local_executor(loaded, jobs))
    return Path(loaded.run.results) / loaded.name


def results_folder(study_or_results: str | Path | Study) -> Path:
    """A study's results folder: given a results folder itself, or a study (file or loaded)."""
    if isinstance(study_or_results, Study) or str(study_or_results).endswith(".toml"):
        loaded, _ = _study(study_or_results)
        return Path(loaded.run.results) / loaded.name
    return Path(study_or_results)


def build_report(
    study_or_results: str | Path | Study | pd.DataFrame,
    out: str | Path = "paper_figs",
    formats: Sequence[str] = ("png", "pdf"),
    name: str = "runs",
) -> Path:
    """Figures and tables of one study (its file, a loaded Study, or its results folder), or of a
    runs table your own training loop wrote (a DataFrame, or a .csv file: arm, seed, test_error
    and the optional columns of docs/stats.md), as `python -m ablate.report` writes them; returns
    out/<study> (out/<name> for a DataFrame, out/<file name> for a CSV)."""
    from ablate.report.analysis import analyse, analyse_runs
    from ablate.report.own_runs import read_user_runs, user_runs
    from ablate.report.write import build_report as write

    if isinstance(study_or_results, pd.DataFrame):
        report = analyse_runs(user_runs(study_or_results, f"<{name}>"), name=name)
    elif str(study_or_results).endswith(".csv"):
        report = analyse_runs(read_user_runs(study_or_results), name=Path(study_or_results).stem)
    else:
        report = analyse(results_folder(study_or_results))
    write(report, Path(out), formats)
    return Path(out) / report.name


def load_runs(results: str | Path | Study) -> pd.DataFrame:
    """The runs table (runs.csv) of a study's results folder (or of a study), as ablate.stats takes it."""
    folder = results_folder(results)
    if not (folder / "runs.csv").exists():
        raise AblateError(f"{folder}: expected a results folder with runs.csv, found none")
    return StudyResults(folder.parent, folder.name).runs()
