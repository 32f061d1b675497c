"""The sections of a study file ([data], [models] with [models.backbone], [train], [run]):
pydantic models with their defaults, allowed values and checks. `study.schema` assembles them
into a Study and loads files."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from ablate.data.names import AUGMENTS, PADS, SOURCES, SPLITS, SUBSETS, file_settings_problem
from ablate.models.arms import (
    ARMS,
    DEFAULT_ARMS,
    DEFAULT_GROUP,
    DEFAULT_STRUCTURE,
    GROUP_KINDS,
    PRESET_GROUP_ORDERS,
    PRESETS,
    REPEAT_MODES,
    ROTATIONS,
    STRUCTURES,
    TRIVIAL_ORDER,
    Group,
)
from ablate.models.backbone import BACKBONES, Backbone, backbone_from_table

# The allowed values come from the torch-free registries of the layers that own each concept
# (data.names, models.arms, models.backbone): one edit adds an arm or a mode, and loading a study
# file loads neither torch nor escnn.
ArmName = Literal[ARMS]
SourceName = Literal[SOURCES]
BackboneName = Literal[tuple(BACKBONES)]
RepeatMode = Literal[REPEAT_MODES]
StructureName = Literal[STRUCTURES]
AugmentName = Literal[AUGMENTS]
SubsetName = Literal[SUBSETS]
PresetName = Literal[PRESETS]
PadName = Literal[PADS]
SplitName = Literal[SPLITS]
GroupName = Literal[GROUP_KINDS]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class DataSettings(_Section):
    source: SourceName = "mnist-rot"
    root: str | None = None
    seed: int = Field(0, ge=0, description="rotation seed of the generated sources")
    limit_train: int | None = Field(None, gt=0)
    limit_test: int | None = Field(None, gt=0)
    pad_to: int | None = Field(None, gt=0)
    test_rotations: int = Field(1, gt=0)
    subset: SubsetName = "first"  # how limit_train / limit_test pick digits
    pad: PadName = "symmetric"  # where pad_to adds its zeros ("right-bottom": the seed paper's 29x29)
    path: str | None = None  # the npz file or image folder of source "npz" / "folder"
    size: int | None = Field(None, gt=0)  # resize a user's images to size x size (antialiased)
    test_split: SplitName = "test"  # "val": measure the test error on x_val / y_val (or root/val)

    @model_validator(mode="after")
    def _files(self) -> DataSettings:
        problem = file_settings_problem(self.source, self.path, self.size, self.test_split)
        if problem:
            raise ValueError(problem)
        return self


class BackboneTable(_Section):
    """[models.backbone] as a table: the declarative shape of the built-in backbones, from which
    all three arms are built and solved to the budget (paddings default to kernel // 2)."""

    name: str = "custom"
    kernels: list[int] = Field(min_length=1)
    widths: list[int] = Field(min_length=1)
    pool_after: list[bool] | None = None
    paddings: list[int] | None = None
    head: Literal["mlp", "conv"] = "mlp"
    hidden: int = Field(64, gt=0)
    head_kernel: int = Field(0, ge=0)
    activation: Literal["elu", "relu"] = "elu"

    @model_validator(mode="after")
    def _layers(self) -> BackboneTable:
        n = len(self.kernels)
        lengths = {"widths": self.widths, "pool_after": self.pool_after, "paddings": self.paddings}
        for key, values in lengths.items():
            if values is not None and len(values) != n:
                raise ValueError(f"expected one {key} entry per layer ({n}, as kernels), found {len(values)}")
        if any(k < 1 for k in self.kernels) or any(w < 1 for w in self.widths):
            raise ValueError(f"expected positive kernels and widths, found {self.kernels}, {self.widths}")
        if self.head == "conv" and self.head_kernel < 1:
            raise ValueError("expected head_kernel >= 1 for the conv head, found 0")
        return self

    def backbone(self) -> Backbone:
        return backbone_from_table(**self.model_dump())


class ModelSettings(_Section):
    backbone: BackboneName | BackboneTable = "repeatnet"  # a built-in's name, or a [models.backbone] table
    group: GroupName = ROTATIONS  # C_N (rotations) or D_N (rotations and reflections) for the G-CNN
    # N of C_N, or a list for a sweep (the plain arm is shared); default 4, or a preset's own orders
    group_order: int | list[int] | None = None
    budgets: list[int] | None = Field(None, min_length=1)
    preset: PresetName | None = None  # the seed paper's fixed models instead of budgets
    preset_width: float = Field(1.0, gt=0, le=4)  # a preset's widths times this (1: the paper's)
    arms: list[ArmName] = Field(default_factory=lambda: list(DEFAULT_ARMS), min_length=1)
    repeat_mode: RepeatMode = "swish"
    repeat_structure: StructureName = DEFAULT_STRUCTURE
    repeat_structures: list[StructureName] | None = None  # several controls, decomposed side by side
    tolerance: float = Field(0.02, gt=0, lt=0.5)
    # a user's network instead of the backbone: "package.module:function" with the builder
    # signature of ablate.models.builder, imported with the study file's folder on the path
    builder: str | None = Field(None, pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
    # the wrong arm's group (arms "wrong"): one label, e.g. "D1", or one per group order,
    # e.g. { 2 = "D1", 4 = "D2" }: a group of the same order that is not a symmetry of the data
    wrong_group: str | dict[str, str] | None = Field(None, validate_default=True)

    @property
    def group_orders(self) -> list[int]:
        if self.group_order is None:
            return list(PRESET_GROUP_ORDERS) if self.preset else [DEFAULT_GROUP.order]
        return self.group_order if isinstance(self.group_order, list) else [self.group_order]

    @property
    def groups(self) -> list[Group]:
        """The G-CNNs' groups, one per group order: the study file's group as values."""
        return [Group(self.group, n) for n in self.group_orders]

    def wrong_group_for(self, group: Group) -> Group | None:
        """The wrong arm's group in `group`'s design (None without the wrong arm)."""
        if "wrong" not in self.arms:
            return None
        label = self.wrong_group if isinstance(self.wrong_group, str) else self.wrong_group[str(group.order)]
        return Group.parse(label)

        if self.wrong_group is None:
            raise ValueError('wrong_group: expected a group for the arm "wrong" (e.g. "D1"), found none')
        table = self.wrong_group if isinstance(self.wrong_group, dict) else {}
        missing = [n for n in self.group_orders if isinstance(self.wrong_group, dict) and str(n) not in table]
        if missing:
            raise ValueError(f"wrong_group: expected a group for every group_order, missing {missing}")
        for order, label in (table or {"": self.wrong_group}).items():
            try:
                wrong = Group.parse(label)
            except ValueError as error:
                raise ValueError(
                    f"wrong_group{'.' + order if order else ''}: {str(error).split(': ', 1)[1]}"
                ) from None
            if (
                wrong.kind == self.group
                and (not order or int(order) == wrong.order)
                and wrong.order in self.group_orders
            ):
                raise ValueError(
                    f"wrong_group: expected a group other than the G-CNN's own, found {wrong.label}"
                )
        return self

    @model_validator(mode="after")
    def _budgets_or_preset(self) -> ModelSettings:
        if (self.budgets is None) == (self.preset is None):
            found = "both" if self.preset else "neither"
            raise ValueError(f"expected budgets or a preset, found {found}")
        if self.builder and (self.preset or self.backbone != "repeatnet"):
            raise ValueError(
                f"builder replaces the backbone and presets, found it with {self.preset or 'a backbone'}"
            )
        if self.preset is None and self.preset_width != 1.0:
            raise ValueError(f"preset_width only with a preset, found {self.preset_width} without one")
        if self.preset:
            fixed = {
                "arms": [a for a in self.arms if a not in DEFAULT_ARMS],
                "group_order": [n for n in self.group_orders if n not in PRESET_GROUP_ORDERS],
                "repeat_structure": [s for s in self.all_repeat_structures if s != DEFAULT_STRUCTURE],
                "repeat_mode": [] if self.repeat_mode == "swish" else [self.repeat_mode],
                "backbone": [] if self.backbone == "repeatnet" else [self.backbone],
                "group": [] if self.group == ROTATIONS else [self.group],
            }
            for key, bad in fixed.items():
                if bad:
                    raise ValueError(
                        f"{key} within the {self.preset} preset (arms plain, repeat, gcnn; C4/C8/C16; "
                        f"the paper repeat structure; swish mode; the repeatnet backbone), found {bad}"
                    )
        return self

    @field_validator("backbone", mode="before")
    @classmethod
    def _backbone_table(cls, value):
        """A [models.backbone] table is checked as one, so its errors name its keys."""
        if not isinstance(value, dict):
            return value
        try:
            return BackboneTable.model_validate(value)
        except ValidationError as error:
            first = error.errors()[0]
            where = ".".join(map(str, first["loc"]))
            message = first["msg"].removeprefix("Value error, ")
            raise ValueError(f"{where}: {message}" if where else message) from None

    @property
    def backbone_spec(self) -> str | Backbone:
        """A built-in backbone's name, or the Backbone of a [models.backbone] table."""
        return self.backbone.backbone() if isinstance(self.backbone, BackboneTable) else self.backbone

    @property
    def all_repeat_structures(self) -> list[str]:
        return self.repeat_structures or [self.repeat_structure]

    @field_validator("group_order")
    @classmethod
    def _group_orders(cls, value: int | list[int] | None, info: ValidationInfo) -> int | list[int] | None:
        if value is None:
            return value
        orders = value if isinstance(value, list) else [value]
        if not orders or any(n < 1 for n in orders) or len(set(orders)) != len(orders):
            raise ValueError(f"a positive integer or a list of distinct ones, found {value}")
        if info.data.get("group", ROTATIONS) == ROTATIONS and TRIVIAL_ORDER in orders:
            raise ValueError(
                'N >= 2 for C_N (C1 is no group; D1, the mirror group, is group = "D" with '
                f"group_order = 1), found {value}"
            )
        return value

    @field_validator("wrong_group")
    @classmethod
    def _wrong_groups(cls, value, info: ValidationInfo):
        arms, orders = info.data.get("arms", []), info.data.get("group_order")
        orders = orders if isinstance(orders, list) else [orders or DEFAULT_GROUP.order]
        if "wrong" not in arms:
            if value is not None:
                raise ValueError(f'no wrong_group without the arm "wrong" in arms, found {value!r}')
            return value
        if value is None:
            raise ValueError('a group for the arm "wrong" (e.g. "D1"), found none')
        table = value if isinstance(value, dict) else {"": value}
        missing = [n for n in orders if isinstance(value, dict) and str(n) not in table]
        if missing:
            raise ValueError(f"a group for every group_order, missing {missing}")
        for order, label in table.items():
            try:
                wrong = Group.parse(label)
            except ValueError as error:
                raise ValueError(f"{order + ': ' if order else ''}{str(error).split(': ', 1)[1]}") from None
            if wrong in [Group(info.data.get("group", ROTATIONS), n) for n in orders]:
                raise ValueError(f"a group other than the G-CNN's own, found {wrong.label}")
        return value

    @field_validator("repeat_structures")
    @classmethod
    def _structures(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and (not value or len(set(value)) != len(value)):
            raise ValueError(f"a non-empty list of distinct structures, found {value}")
        return value

    @field_validator("budgets")
    @classmethod
    def _positive_unique_budgets(cls, budgets: list[int] | None) -> list[int] | None:
        if budgets is None:
            return budgets
        if any(b <= 0 for b in budgets):
            raise ValueError(f"positive integers, found {budgets}")
        if len(set(budgets)) != len(budgets):
            raise ValueError(f"distinct budgets, found {budgets}")
        return budgets

    @field_validator("arms")
    @classmethod
    def _unique_arms(cls, arms: list[str]) -> list[str]:
        if len(set(arms)) != len(arms):
            raise ValueError(f"distinct arms, found {arms}")
        return arms


class TrainConfig(_Section):
    """Optimisation settings of one run (Adam; lr constant for `constant_epochs`, then x`decay`
    per epoch); ablate.training.loop.fit takes this."""

    epochs: int = Field(30, gt=0)
    batch_size: int = Field(64, ge=2)
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(1e-7, ge=0)
    constant_epochs: int = Field(10, ge=0)
    decay: float = Field(0.8, gt=0, le=1)
    grad_clip: float | None = Field(1.0, gt=0)
    augment: AugmentName = "none"
    eval_every: int = Field(1, gt=0)
    bf16: bool | Literal["cuda"] = False  # bfloat16 autocast (CUDA or CPU); "cuda": on CUDA only
    drop_last: bool = False  # skip each epoch's last partial batch (the seed paper's loader)


class TrainSettings(TrainConfig):
    """The [train] section: the training settings and the seeds of the grid."""

    seeds: list[int] = Field(min_length=1)
    # budget (a TOML key, so text) -> its own seeds, replacing `seeds` there: spend seeds where
    # the spread is largest
    budget_seeds: dict[str, list[int]] | None = None

    def seeds_for(self, budget: int) -> list[int]:
        """The seeds of one budget's cells."""
        return (self.budget_seeds or {}).get(str(budget), self.seeds)

    @property
    def all_seeds(self) -> list[int]:
        """Every seed of the grid, in first-use order."""
        lists = [self.seeds, *(self.budget_seeds or {}).values()]
        return list(dict.fromkeys(seed for seeds in lists for seed in seeds))

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, seeds: list[int]) -> list[int]:
        if any(s < 0 for s in seeds) or len(set(seeds)) != len(seeds):
            raise ValueError(f"distinct non-negative integers, found {seeds}")
        return seeds

    @field_validator("budget_seeds")
    @classmethod
    def _budget_seeds(cls, value: dict[str, list[int]] | None) -> dict[str, list[int]] | None:
        for budget, seeds in (value or {}).items():
            if not seeds or any(s < 0 for s in seeds) or len(set(seeds)) != len(seeds):
                raise ValueError(f"budget {budget}: distinct non-negative integers, found {seeds}")
        return value


class RunSettings(_Section):
    device: str = "auto"
    results: str = "results"
    threads: int | None = Field(None, gt=0)  # torch threads per run (default: cores / jobs)
    jobs: int | None = Field(None, gt=0)  # runs at a time on the CPU (--jobs; default from the machine)
    # seeds of one cell trained as one grouped network; default: all of them on CUDA, 1 on the
    # CPU (measured by `python -m ablate.bench`: grouped convolutions do not pay off there)
    fuse_seeds: int | None = Field(None, gt=0)
    # the training step through torch.compile (training.compiled): "auto" where the bench's rule
    # says the warm-up repays (CPU, enough work per cohort), true always, false never
    compile: Literal["auto"] | bool = "auto"
    # seeds planned to a precision (--precision, docs/stats.md): train until the repetition share's
    # 95% delta interval has this half-width (points), by stats.plan_seeds' two-stage plan from a
    # pilot of seeds 0 .. pilot_seeds - 1 (at least stats.PILOT_MIN = 5), at most max_seeds per arm,
    # round_seeds at a time
    precision: float | None = Field(None, gt=0, lt=100)
    pilot_seeds: int = Field(10, ge=5)
    # which share the precision is on: "rep" (repetition), or with the wrong arm "struct" (sharing
    # structure) or "sym" (symmetry): stats.table.SHARES
    precision_share: Literal["rep", "struct", "sym"] = "rep"
    # results folders of other studies (e.g. "results/answer") whose finished runs of this grid's
    # run keys, on the same data, are copied here instead of trained again (their rows keep the
    # study, code and CPU that made them)
    reuse: list[str] = Field(default_factory=list)
    max_seeds: int = Field(100, gt=0)
    round_seeds: int = Field(5, gt=0)

    @field_validator("device")
    @classmethod
    def _device(cls, device: str) -> str:
        if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", device):
            raise ValueError(f"one of auto, cpu, cuda, cuda:N, found {device!r}")
        return device

    @model_validator(mode="after")
    def _max_seeds_hold_the_pilot(self) -> RunSettings:
        if self.max_seeds < self.pilot_seeds:
            raise ValueError(
                f"max_seeds: expected at least pilot_seeds ({self.pilot_seeds}), found {self.max_seeds}"
            )
        return self
