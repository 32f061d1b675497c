"""The run grid of a study and the run key: a hash of everything that changes a run's result."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, fields, is_dataclass
from pathlib import Path

from ablate.data.sources import data_shape
from ablate.errors import DataError, StudyError
from ablate.models.arms import ARM_TRAINING, DEFAULT_STRUCTURE, NO_STRUCTURE, ROTATIONS, Group, arm_spec
from ablate.models.backbone import get_backbone
from ablate.models.budget import preset_specs
from ablate.models.build import solve_triplet
from ablate.models.builder import BuilderError
from ablate.models.spec import ArmSpec
from ablate.study.schema import DataSettings, Study, TrainSettings

RUN_KEY_VERSION = 2  # bump when the training code changes what a run key's result is (2: CPU-fast ELU)

# Settings added after run keys were first made: a key holding its default (the schema's or
# ArmSpec's, read from them; or an absent value) is left out of the run key, so adding a setting
# never orphans older runs.
_LATER_DATA = ("subset", "pad", "size", "test_split")
_LATER_MODEL = (
    "repeat_structure", "preset", "preset_width", "group", "channels", "classes",
    "builder", "builder_source", "width", "base_scale", "wrong_group",
)  # fmt: skip
_SPEC_DEFAULTS = {f.name: f.default for f in fields(ArmSpec)} | {
    "group": ROTATIONS
}  # as ArmSpec.flat spells it
LATER_KEYS: dict[str, dict[str, tuple]] = {
    "data": {k: (DataSettings.model_fields[k].default,) for k in _LATER_DATA},
    "train": {"drop_last": (TrainSettings.model_fields["drop_last"].default,)},
    "model": {k: (_SPEC_DEFAULTS[k],) for k in _LATER_MODEL}
    | {"repeat_structure": (None, NO_STRUCTURE, DEFAULT_STRUCTURE)},  # the control before it was recorded
}
# ArmSpec fields that do not change a run's result (where a builder imports from): every other
# field is hashed, so a field added to ArmSpec enters the run key unless it is named here or in
# LATER_KEYS["model"].
NOT_IN_RUN_KEY: tuple[str, ...] = ("builder_folder",)


@dataclass(frozen=True)
class RunSpec:
    """One cell of the grid: an arm at a budget with one seed."""

    study: str
    arm: str
    budget: int
    seed: int
    run_key: str
    model: ArmSpec


def _plain(value):
    """A value as JSON can hash it: a custom Backbone as its fields."""
    return asdict(value) if is_dataclass(value) else value


def run_key(study: Study, model_spec: ArmSpec, seed: int) -> str:
    """Hash of everything that changes a run's result, and nothing else (no paths, no device).

    Settings that cannot change an arm's model are left out of its key (the plain arm ignores
    the group order, only the repeat arm uses the repeat mode), so changing them reuses runs.
    """
    data = study.data.model_dump(exclude={"root", "path"})  # where the files are is no part of a result
    train = arm_train_config(study.train, model_spec.arm).model_dump(
        exclude={"seeds", "budget_seeds", "eval_every"}
    )
    model = {
        name: _plain(value) for name, value in model_spec.flat().items() if name not in NOT_IN_RUN_KEY
    }  # tuples hash as the lists they were before; the group as its kind and order
    sections = {"data": data, "train": train, "model": model}
    payload = {
        name: {k: v for k, v in values.items() if v not in LATER_KEYS[name].get(k, ())}
        for name, values in sections.items()
    }
    payload.update(version=RUN_KEY_VERSION, seed=seed)
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def study_shape(study: Study) -> tuple[int, int, int]:
    """(channels, image size, classes) of a study's data: the data layer is asked (a user's files
    are read once per process; the built-in sources are 28x28 grey digits of 10 classes)."""
    d = study.data
    return data_shape(d.source, d.path, d.size, d.test_split, d.pad_to, d.root)


def arm_train_config(train: TrainSettings, arm: str) -> TrainSettings:
    """The training settings of one arm's runs: the study's, with what the arm fixes (the
    augmented arm trains with rotation augmentation)."""
    return train.model_copy(update=ARM_TRAINING.get(arm, {}))


def _triplet(
    study: Study, source: str, budget: int, group: Group, repeat_structure: str, shape: tuple
) -> dict:
    """The study's arms' ArmSpecs at one budget, group and control: the built-in backbone's or a
    [models] builder's (imported from the study file's folder)."""
    m = study.models
    channels, size, classes = shape
    folder = str(Path(source).resolve().parent) if m.builder and Path(source).exists() else None
    return solve_triplet(
        budget, group=group, repeat_structure=repeat_structure, repeat_mode=m.repeat_mode,
        tolerance=m.tolerance, channels=channels, classes=classes, size=size, backbone=m.backbone_spec,
        builder=m.builder, folder=folder, arms=tuple(m.arms), wrong_group=m.wrong_group_for(group),
    )  # fmt: skip


def expand_grid(study: Study, source: str = "<study>") -> list[RunSpec]:
    """Budgets x group orders x repeat structures x arms x seeds, in that order, each with its
    solved model and run key; a run shared by several cells (the plain arm across group orders)
    appears once. An infeasible budget raises StudyError naming it (and the group order).
    With a preset: its models x seeds, all under one nominal budget, the baseline's count.
    """
    runs = []
    m = study.models
    d = study.data
    try:
        channels, size, classes = study_shape(study)
    except DataError as error:
        raise StudyError(f"{source}: data: {error}") from None
    # symmetric padding keeps every pooled map even (exact 90-degree turns and mirrors); the seed
    # paper's right-bottom 29x29 inputs give odd maps, so they are inexact there (the report says so)
    try:
        if not m.builder:  # a user's network is checked on a random batch when it is solved
            get_backbone(m.backbone_spec).check_input_size(size, exact_turns=d.pad == "symmetric")
    except ValueError as error:
        key = "data.pad_to" if d.pad_to else ("data.size" if d.size else "data")
        raise StudyError(f"{source}: {key}: {error}") from None
    if m.preset:
        if channels != 1:
            raise StudyError(f"{source}: models.preset: expected grey images (1 channel), found {channels}")
        specs = preset_specs(m.preset, m.group_orders, classes, width=m.preset_width)
        return [
            RunSpec(study.name, spec.arm, specs[0].n_params, seed, run_key(study, spec, seed), spec)
            for spec in specs
            if spec.arm in m.arms
            for seed in study.train.seeds_for(specs[0].n_params)
        ]
    seen: set[str] = set()
    for budget in m.budgets:
        for group in m.groups:
            for repeat_structure in m.all_repeat_structures:
                try:
                    triplet = _triplet(
                        study, source, budget, group, repeat_structure, (channels, size, classes)
                    )
                except BuilderError as error:
                    raise StudyError(f"{source}: {error}") from None
                except ValueError as error:
                    key = "models.budgets" if len(m.groups) == 1 else f"models.group_order: {group.label}"
                    raise StudyError(f"{source}: {key}: {error}") from None
                for arm in m.arms:
                    spec = arm_spec(triplet, arm)
                    for seed in study.train.seeds_for(budget):
                        key = run_key(study, spec, seed)
                        if key not in seen:  # the plain arm, and the G-CNN across structures, are shared
                            seen.add(key)
                            runs.append(RunSpec(study.name, arm, budget, seed, key, spec))
    return runs
