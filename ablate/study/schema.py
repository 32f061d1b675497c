"""Study files: the TOML schema (pydantic) and loading with one-line errors naming the file and key.
The sections' models are in `study.sections`; a Study holds one of each."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from pydantic import Field, ValidationError, model_validator

from ablate._compat import tomllib
from ablate.errors import StudyError
from ablate.study.sections import (  # noqa: F401 (the schema's names, re-exported)
    BackboneTable,
    DataSettings,
    ModelSettings,
    RunSettings,
    TrainConfig,
    TrainSettings,
    _Section,
)


class Study(_Section):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    data: DataSettings = DataSettings()
    models: ModelSettings
    train: TrainSettings
    run: RunSettings = RunSettings()

    @model_validator(mode="after")
    def _precision_share_has_its_arms(self) -> Study:
        if self.run.precision_share != "rep" and "wrong" not in self.models.arms:
            raise ValueError(
                f'run.precision_share: "{self.run.precision_share}" needs the arm "wrong" in models.arms, '
                f"found {self.models.arms}"
            )
        return self

    @model_validator(mode="after")
    def _budget_seeds_name_budgets(self) -> Study:
        unknown = sorted(set(self.train.budget_seeds or {}) - {str(b) for b in self.models.budgets or []})
        if unknown:
            raise ValueError(
                f"train.budget_seeds: expected budgets of models.budgets {self.models.budgets}, "
                f"found {unknown}"
            )
        return self


def _describe(error: dict) -> str:
    """'key.path: expected ..., found ...' for one pydantic error."""
    loc = ".".join(str(part) for part in error["loc"] if not str(part).startswith("function-"))
    kind, msg = error["type"], error["msg"]
    if kind == "extra_forbidden":
        return f"{loc}: unknown key"
    if kind == "missing":
        return f"{loc}: missing required key"
    msg = msg.removeprefix("Value error, ")
    msg = re.sub(r"^Input should be ", "expected ", msg)
    if not msg.startswith("expected"):
        msg = "expected " + msg
    found = error.get("input")
    if "found" in msg or isinstance(found, dict):
        return f"{loc}: {msg}"
    return f"{loc}: {msg}, found {found!r}"


def parse_study(data: dict, source: str = "<study>") -> Study:
    """Validate a study dict; StudyError with one line naming `source` and the key path."""
    try:
        return Study.model_validate(data)
    except ValidationError as error:
        problems = error.errors()
        more = f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""
        raise StudyError(f"{source}: {_describe(problems[0])}{more}") from None


def read_toml(path: Path, what: str = "study") -> dict:
    """A TOML file's tables; StudyError with one line when it cannot be read or parsed."""
    try:
        text = path.read_text()
    except OSError as error:
        raise StudyError(f"{path}: cannot read the {what} file ({error.strerror})") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise StudyError(f"{path}: invalid TOML: {error}") from None


def load_study(path: str | Path) -> Study:
    """Read and validate a study TOML file."""
    path = Path(path)
    return parse_study(read_toml(path), str(path))


def with_overrides(study: Study, source: str, cleared: Sequence[str] = (), **sections: dict) -> Study:
    """The study with some keys replaced, e.g. with_overrides(s, "command line", train={"seeds": [0]})
    (a None value leaves the key as it is), and the `cleared` keys ("models.wrong_group") unset."""
    data = study.model_dump()
    for section, values in sections.items():
        data[section].update({k: v for k, v in values.items() if v is not None})
    for key in cleared:
        section, name = key.split(".")
        data[section][name] = None
    return parse_study(data, source)
