"""The Python interface: `from ablate import triplet, run_study, build_report, load_runs`
(loaded on first use, so `import ablate` stays light). `ablate.run` and `ablate.report` are the
command-line modules; these functions do what they do, from Python."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from torch import nn

from ablate.errors import AblateError, StudyError
from ablate.models.arms import DEFAULT_STRUCTURE, Group
from ablate.models.builder import build_arms, resolve, solve_builder_arms
from ablate.models.spec import count_params
from ablate.results import StudyResults
from ablate.study.schema import Study, load_study


@dataclass
class Triplet:
    """The matched triplet of one builder at one budget: three nn.Modules mapping images
    (B, in_channels, size, size) to logits (B, classes), and their learnable counts."""

    plain: nn.Module
    repeat: nn.Module
    gcnn: nn.Module

    @property
    def counts(self) -> dict[str, int]:
        return {arm: count_params(getattr(self, arm)) for arm in ("plain", "repeat", "gcnn")}


def triplet(
    builder: str | Callable,
    budget: int,
    group: str = "C4",
    in_channels: int = 1,
    classes: int = 10,
    size: int = 28,
    repeat_structure: str = DEFAULT_STRUCTURE,
    repeat_mode: str = "swish",
    tolerance: float = 0.02,
) -> Triplet:
    """The plain, repeat and G-CNN arms of `builder` (a function with the builder signature of
    ablate.models.builder, or its "package.module:function" path) at `budget` learnable
    parameters, each within `tolerance`; the G-CNN on `group` ("C4", "D4", ...), checked
    invariant at init on random (size x size) images."""
    g = Group.parse(group)
    build, name = (resolve(builder), builder) if isinstance(builder, str) else (builder, builder.__name__)
    shape = (in_channels, size, classes)
    solved = solve_builder_arms(
        build, name, budget, g.kind, g.order, shape, repeat_mode, repeat_structure, tolerance
    )
    arms = build_arms(build, name, solved, g.kind, g.order, shape, repeat_mode, repeat_structure)
    return Triplet(**arms)


def _study(study: str | Path | Study) -> tuple[Study, str]:
    return (study, "<study>") if isinstance(study, Study) else (load_study(study), str(study))


def run_study(study: str | Path | Study, jobs: int | None = None, force: bool = False) -> Path:
    """Train every missing run of a study (a file or a loaded Study), as `python -m ablate.run`
    does (to its precision where [run] precision is set); returns its results folder.
    StudyError when a run did not finish; bad input raises as the command line reports it."""
    from ablate.run import local_executor
    from ablate.training.driver import run_study as train
    from ablate.training.precision import run_to_precision

    loaded, source = _study(study)
    if loaded.run.precision is not None:
        code = run_to_precision(loaded, source, lambda: local_executor(loaded, jobs), force=force)
    else:
        code = train(loaded, force=force, source=source, executor=local_executor(loaded, jobs))
    if code:
        raise StudyError(f"{source}: not every run finished (exit code {code}); rerun to resume")
    return Path(loaded.run.results) / loaded.name


def results_folder(study_or_results: str | Path | Study) -> Path:
    """A study's results folder: given a results folder itself, or a study (file or loaded)."""
    if isinstance(study_or_results, Study) or str(study_or_results).endswith(".toml"):
        loaded, _ = _study(study_or_results)
        return Path(loaded.run.results) / loaded.name
    return Path(study_or_results)


def build_report(
    study_or_results: str | Path | Study,
    out: str | Path = "paper_figs",
    formats: Sequence[str] = ("png", "pdf"),
) -> Path:
    """Figures and tables of one study (its file, a loaded Study, or its results folder), as
    `python -m ablate.report` writes them; returns out/<study>/."""
    from ablate.report.__main__ import build_report as write
    from ablate.report.analysis import analyse

    report = analyse(results_folder(study_or_results))
    write(report, Path(out), formats)
    return Path(out) / report.name


def load_runs(results: str | Path | Study) -> pd.DataFrame:
    """The runs table (runs.csv) of a study's results folder (or of a study), as ablate.stats takes it."""
    folder = results_folder(results)
    if not (folder / "runs.csv").exists():
        raise AblateError(f"{folder}: expected a results folder with runs.csv, found none")
    return StudyResults(folder.parent, folder.name).runs()
