"""Ladder files: an ordered walk through studies, one factor changed per step (the bridge from the
paper's "up to 40%" to the package's answer is one, studies/bridge.toml).

A ladder names, per step, the study files whose finished runs it reads (the results folder each
study writes), the cells it takes (a budget, repeat controls), what the step changes in words,
and the seeds per arm it plans. A step may take its "up to" over its
designs (the largest share, with the selection named), and an estimator step applies the seed
paper's one-seed estimator to an earlier step's runs. Loading reads TOML only: no torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, model_validator

from ablate._compat import tomllib
from ablate.errors import StudyError
from ablate.models.arms import STRUCTURES
from ablate.study.schema import Study, _describe, _Section, load_study, read_toml

ESTIMATORS = ("single_seed",)  # the seed paper's estimator (stats.single_seed_shares)


class LadderSettings(_Section):
    """[ladder]: its name (the report's folder), its title, and the reference share the figure
    and the estimator step compare with (the paper's 40%)."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    title: str
    reference: float = Field(0.40, gt=-1, lt=2)
    reference_label: str = "reference"


class Step(_Section):
    """One [[steps]] table. A decomposition step names `studies`; an estimator step names the
    earlier step whose runs it reads (`of`). `change` may hold {error} for an estimator step
    (filled with "best" / "final")."""

    key: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    change: str
    studies: list[str] = Field(default_factory=list)  # study files, relative to the ladder file
    budget: int | None = Field(None, gt=0)  # the cells of this budget only (None: every budget)
    controls: list[Literal[STRUCTURES]] | None = None  # the repeat controls it takes (None: all)
    seeds: int | None = Field(None, gt=0)  # seeds per arm the step plans
    up_to: str | None = None  # the step's headline is the largest share over its designs, over ...
    estimator: Literal[ESTIMATORS] | None = None
    of: str | None = None  # an estimator step: the step whose runs it reads

    @model_validator(mode="after")
    def _kind(self) -> Step:
        if self.estimator is None and (not self.studies or self.of is not None):
            raise ValueError("expected studies = [FILE, ...] (and no `of`) for a decomposition step")
        if self.estimator is not None and (self.studies or self.of is None):
            raise ValueError("expected of = STEP (and no studies) for an estimator step")
        return self


class LadderFile(_Section):
    ladder: LadderSettings
    steps: list[Step] = Field(min_length=1)

    @model_validator(mode="after")
    def _steps(self) -> LadderFile:
        seen: list[str] = []
        for step in self.steps:
            if step.key in seen:
                raise ValueError(f"steps: expected distinct keys, found {step.key!r} twice")
            if step.of is not None and step.of not in seen:
                raise ValueError(
                    f"steps.{step.key}.of: expected an earlier step of {seen}, found {step.of!r}"
                )
            seen.append(step.key)
        return self


@dataclass(frozen=True)
class Ladder:
    """A ladder file, validated, with each step's study files read (`studies`: step key -> its
    studies, whose results folders the report reads)."""

    path: Path
    settings: LadderSettings
    steps: tuple[Step, ...]
    studies: dict[str, tuple[Study, ...]]

    @property
    def name(self) -> str:
        return self.settings.name

    def step(self, key: str) -> Step:
        return next(s for s in self.steps if s.key == key)


def is_ladder(path: str | Path) -> bool:
    """Whether a TOML file is a ladder (it has a [ladder] table) rather than a study."""
    try:
        return "ladder" in tomllib.loads(Path(path).read_text())
    except (OSError, tomllib.TOMLDecodeError):
        return False


def load_ladder(path: str | Path) -> Ladder:
    """Read and validate a ladder file and its steps' study files; StudyError with one line
    naming the file and the key path."""
    path = Path(path)
    try:
        spec = LadderFile.model_validate(read_toml(path, "ladder"))
    except ValidationError as error:
        raise StudyError(f"{path}: {_describe(error.errors()[0])}") from None
    studies = {}
    for step in spec.steps:
        try:
            studies[step.key] = tuple(load_study(path.parent / name) for name in step.studies)
        except StudyError as error:
            raise StudyError(f"{path}: steps.{step.key}.studies: {error}") from None
    return Ladder(path, spec.ladder, tuple(spec.steps), studies)
