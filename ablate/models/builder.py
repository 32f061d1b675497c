"""Your own network as the three arms (docs/models.md, "Your own network").

A builder is a function

    build(gspace, width: float, in_channels: int, classes: int) -> torch.nn.Module

named in a study as "package.module:function" ([models] builder). It returns a module mapping
images (B, in_channels, H, W) to logits (B, classes), invariant to the gspace's group. From it:

- gcnn: build(group.gspace(), w_g), as written (rot2dOnR2(N) or flipRot2dOnR2(N));
- repeat: the same network at w_g with every R2Conv, InnerBatchNorm and GroupPooling twinned
  (models.twin), its base scale solved to the budget: exactly as wide as the G-CNN;
- plain: build(trivialOnR2(), w_p) with full k x k convolutions and BatchNorm2d.

w_g, w_p and the base scale are solved so each arm's learnable count (on the built model) is
within the study's tolerance of the budget. Every problem is a BuilderError of one line.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib
import inspect
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import escnn.nn.init
import torch
from escnn import nn as enn
from torch import nn

from ablate.models.arms import DEFAULT_GROUP, DEFAULT_STRUCTURE, NO_STRUCTURE, TRIVIAL_GROUP, Group
from ablate.models.budget import Solution, solve_multiplier
from ablate.models.counting import count_params
from ablate.models.probe import BuilderError, check_geometry, check_outputs, check_trains, first_line
from ablate.models.spec import ArmSpec
from ablate.models.twin import TwinError, apply_twin, base_channels, plan_twin, twin_counter


def resolve(path: str, folder: str | None = None) -> Callable:
    """The function `path` ("package.module:function") names, imported with `folder` (the study
    file's) on sys.path; BuilderError when it does not import or is not callable."""
    module_name, sep, name = path.partition(":")
    if not sep or not module_name or not name:
        raise BuilderError(f"models.builder: expected 'package.module:function', found {path!r}")
    if folder and folder not in sys.path:
        sys.path.insert(0, folder)
    try:
        module = importlib.import_module(module_name)
    except Exception as error:  # the user's module: any error on import is theirs to see
        raise BuilderError(
            f"models.builder: {path} does not import ({type(error).__name__}: {error})"
        ) from None
    build = getattr(module, name, None)
    if build is None or not callable(build):
        found = "nothing" if build is None else type(build).__name__
        raise BuilderError(
            f"models.builder: {path}: expected a callable {name} in {module_name}, found {found}"
        )
    return build


def source_hash(build: Callable) -> str:
    """Short hash of the file that defines `build` (part of the run key: editing the network
    retrains it); '' when the source cannot be found."""
    try:
        return hashlib.sha256(Path(inspect.getsourcefile(build)).read_bytes()).hexdigest()[:12]
    except (TypeError, OSError):
        return ""


def call(build: Callable, path: str, space, width: float, in_channels: int, classes: int) -> nn.Module:
    """build(space, width, in_channels, classes), its exceptions as one BuilderError line (on the
    trivial group: a hint for networks that restrict their group)."""
    try:
        net = build(space, width, in_channels, classes)
    except Exception as error:
        hint = (
            "; the plain arm is the network built on trivialOnR2(): the builder must build there too (a "
            "network that restricts its group skips the restriction)"
            if space.fibergroup.order() == 1
            else ""
        )
        raise BuilderError(
            f"models.builder: {path} raised {first_line(error)} (called with {space.name}, width {width:g}, "
            f"in_channels {in_channels}, classes {classes}){hint}"
        ) from None
    if not isinstance(net, nn.Module):
        raise BuilderError(
            f"models.builder: {path} returned {type(net).__name__}, expected a torch.nn.Module"
        )
    return net


@contextlib.contextmanager
def _without_weight_init():
    """escnn's R2Conv draws its weights in its constructor (generalized_he_init: about two thirds
    of a D16 network's build); a build that is only counted skips it, and leaves torch's random
    state as it found it."""
    original = escnn.nn.init.generalized_he_init
    escnn.nn.init.generalized_he_init = lambda *args, **kwargs: None
    try:
        with torch.random.fork_rng(devices=[]):
            yield
    finally:
        escnn.nn.init.generalized_he_init = original


def counted(make: Callable[[float], nn.Module]) -> Callable[[float], int]:
    """The learnable count of make(width), built without drawing weights (only counted)."""

    def count(width: float) -> int:
        with _without_weight_init():
            return count_params(make(width))

    return count


def solve_width(count: Callable[[float], int], budget: int, tolerance: float, what: str) -> tuple[float, int]:
    """A width whose count (a build of the network) is within `tolerance` of `budget`
    (budget.solve_multiplier from the width whose count is first under the budget, halving from 1;
    few points: every count builds the network); BuilderError naming the counts around it."""
    counts: dict[float, int] = {}

    def at(w: float) -> int:
        if w not in counts:
            counts[w] = count(w)
        return counts[w]

    lo = 1.0
    while at(lo) > budget and lo > 2**-10:
        lo /= 2
    return _checked(
        solve_multiplier(at, budget, tolerance, lo=lo, hi=2 * lo, points=6), budget, tolerance, what
    )


def solve_scale(count: Callable[[float], int], budget: int, tolerance: float, top: float, what: str):
    """The repeat twin's base scale in (0, top] (budget.solve_multiplier on a fine grid: its count
    is arithmetic); BuilderError naming the counts around the budget."""
    solved = solve_multiplier(count, budget, tolerance, lo=top / 4096, hi=top, points=3000, top=top)
    return _checked(solved, budget, tolerance, what)


def _checked(solved: Solution, budget: int, tolerance: float, what: str) -> tuple[float, int]:
    if not solved.within(budget, tolerance):
        raise BuilderError(f"models.budgets: {solved.error(what, budget, tolerance)}")
    return solved.multiplier, solved.count


@dataclass(frozen=True)
class BuilderArms:
    """The three arms' solved numbers at one budget, group and control: per arm its width (plain:
    w_p; repeat and gcnn: w_g), the repeat twin's base scale, learnable counts, and per replaced
    convolution the learnable widths (plain channels / repeat base channels / G-CNN fields) and
    physical widths (output channels)."""

    width: dict[str, float]
    base_scale: float
    n_params: dict[str, int]
    learnable_widths: dict[str, tuple[int, ...]]
    physical_widths: dict[str, tuple[int, ...]]


class Network:
    """One builder with everything fixed but the width: builds, twins and counts an arm."""

    def __init__(
        self, build: Callable, path: str, group: Group, shape: tuple, mode: str, repeat_structure: str
    ):
        self.path, self.build = path, build
        self.group, self.shape = group, shape
        self.mode, self.repeat_structure = mode, repeat_structure

    def on(self, group: Group, width: float) -> nn.Module:
        """The network as written on `group`'s gspace at `width`."""
        return call(self.build, self.path, group.gspace(), width, self.shape[0], self.shape[2])

    def gcnn(self, width: float) -> nn.Module:
        return self.on(self.group, width)

    def plain(self, width: float) -> nn.Module:
        net = self.on(TRIVIAL_GROUP, width)
        return apply_twin(net, self.plan(net, "plain"), 0.0)

    def repeat(self, width: float, scale: float) -> nn.Module:
        net = self.gcnn(width)
        return apply_twin(net, self.plan(net, "repeat"), scale)

    def wide(self, width: float) -> nn.Module:
        """The G-CNN's network at `width` with full filters of its physical shape (the wide arm)."""
        net = self.gcnn(width)
        return apply_twin(net, self.plan(net, "wide"), 0.0)

    def plan(self, net: nn.Module, twin: str):
        try:
            return plan_twin(net, twin, self.mode, self.repeat_structure)
        except TwinError as error:
            raise BuilderError(f"models.builder: {self.path} ({twin} arm): {error}") from None


def widths_of(net: nn.Module, twin: str, scale: float = 0.0) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(learnable widths, physical widths) per R2Conv of an arm's network before it is twinned:
    G-CNN fields (or plain channels) / the repeat twin's base channels at `scale`, and output
    channels."""
    convs = [m for m in net.modules() if isinstance(m, enn.R2Conv)]
    physical = tuple(c.out_type.size for c in convs)
    if twin == "repeat":
        return tuple(base_channels(c.out_type, scale) for c in convs), physical
    return tuple(len(c.out_type) for c in convs), physical


def probe_checks(net: Network, shape: tuple) -> None:
    """The network at width 1 on every gspace, checked before any search: the G-CNN's outputs and
    invariance, the twins' plans, the plain build's outputs and its convolutions' geometry."""
    where = f"models.builder: {net.path}"
    gcnn = net.gcnn(1.0)
    net.plan(gcnn, "repeat")
    plain = net.on(TRIVIAL_GROUP, 1.0)
    check_outputs(gcnn, f"{where} (gcnn {net.group.label})", shape, invariant_to=net.group)
    check_geometry(gcnn, plain, where)
    check_outputs(net.plain(1.0), f"{where} (plain)", shape)


def solve_controls(
    net: Network, budget: int, tolerance: float, w_g: float, physical: tuple, arms: tuple, wrong: Group | None
) -> dict[str, tuple]:
    """The wrong and wide arms' (width, learnable count, learnable widths, physical widths) where
    `arms` names them: the network on `wrong` solved to the budget and checked invariant to its
    own group; the G-CNN's network at w_g with every weight free (not solved)."""
    out = {}
    if "wrong" in arms:
        if wrong is None:
            raise BuilderError(
                f"models.wrong_group: the wrong arm needs a group for {net.group.label}, found none"
            )
        label = f"wrong {wrong.label}"
        w_w, n_w = solve_width(counted(lambda w: net.on(wrong, w)), budget, tolerance, label)
        built = net.on(wrong, w_w)
        check_outputs(built, f"models.builder: {net.path} ({label})", net.shape, invariant_to=wrong)
        check_trains(built, f"models.builder: {net.path} (wrong arm)", net.shape)
        out["wrong"] = (w_w, n_w, *widths_of(built, "gcnn"))
    if "wide" in arms:
        wide = net.wide(w_g)
        check_trains(wide, f"models.builder: {net.path} (wide arm)", net.shape)
        out["wide"] = (w_g, count_params(wide), physical, physical)
    return out


@functools.cache
def solve_builder_arms(
    build: Callable, path: str, budget: int, group: Group, shape: tuple, mode: str, repeat_structure: str,
    tolerance: float, arms: tuple = ("plain", "repeat", "gcnn"), wrong: Group | None = None,
) -> BuilderArms:  # fmt: skip
    """Widths and base scale of the arms of `build` (named `path` in messages) at `budget`: the
    three, and the wrong and wide arms where `arms` names them (cached per process: each count
    builds the user's network). shape: (in_channels, image size, classes)."""
    net = Network(build, path, group, shape, mode, repeat_structure)
    label = group.label
    probe_checks(net, shape)  # what is wrong with the network is said before any search
    w_g, n_g = solve_width(counted(net.gcnn), budget, tolerance, f"gcnn {label}")
    w_p, n_p = solve_width(counted(net.plain), budget, tolerance, "plain")
    g = net.gcnn(w_g)
    check_outputs(g, f"models.builder: {path} (gcnn {label})", shape, invariant_to=group)
    counter = twin_counter(g, net.plan(g, "repeat"))
    scale, n_r = solve_scale(counter, budget, tolerance, float(group.size), f"repeat {label}")
    plain = net.on(TRIVIAL_GROUP, w_p)
    plain_widths = widths_of(plain, "plain")  # read before the twin replaces its R2Convs
    for arm, model in (("gcnn", g), ("plain", net.plain(w_p)), ("repeat", net.repeat(w_g, scale))):
        check_trains(model, f"models.builder: {path} ({arm} arm)", shape)
    (g_learn, physical), (r_learn, _) = widths_of(g, "gcnn"), widths_of(g, "repeat", scale)
    solved = {
        "plain": (w_p, n_p, *plain_widths), "repeat": (w_g, n_r, r_learn, physical),
        "gcnn": (w_g, n_g, g_learn, physical),
    } | solve_controls(net, budget, tolerance, w_g, physical, arms, wrong)  # fmt: skip
    return BuilderArms(
        width={arm: v[0] for arm, v in solved.items()},
        base_scale=scale,
        n_params={arm: v[1] for arm, v in solved.items()},
        learnable_widths={arm: v[2] for arm, v in solved.items()},
        physical_widths={arm: v[3] for arm, v in solved.items()},
    )


def builder_triplet(
    budget: int,
    *,
    builder: str | Callable,
    folder: str | None = None,
    group: Group = DEFAULT_GROUP,
    repeat_structure: str = DEFAULT_STRUCTURE,
    repeat_mode: str = "swish",
    tolerance: float = 0.02,
    channels: int = 1,
    classes: int = 10,
    size: int = 28,
    arms: tuple = ("plain", "repeat", "gcnn"),
    wrong_group: Group | None = None,
) -> dict[str, ArmSpec]:
    """The ArmSpecs of the three arms of a builder ("package.module:function", imported with
    `folder` on the path, or the function itself) at `budget`, and of the wrong and wide arms
    where `arms` names them, as budget.solve_builtin_triplet gives the built-in backbone's; the
    network is probed on (channels, size, size) images."""
    build, path = (
        (resolve(builder, folder), builder) if isinstance(builder, str) else (builder, name_of(builder))
    )
    shape = (channels, size, classes)
    solved = solve_builder_arms(
        build, path, budget, group, shape, repeat_mode, repeat_structure, tolerance, tuple(arms), wrong_group
    )
    common = {
        "channels": channels, "classes": classes, "builder": path, "builder_source": source_hash(build),
        "builder_folder": folder or "",
    }  # fmt: skip
    specs = {}
    for arm in solved.width:
        specs[arm] = ArmSpec(
            arm, "builder", solved.learnable_widths[arm], solved.physical_widths[arm], solved.n_params[arm],
            group=TRIVIAL_GROUP if arm == "plain" else group,
            repeat_mode=repeat_mode if arm == "repeat" else None,
            repeat_structure=repeat_structure if arm == "repeat" else NO_STRUCTURE, width=solved.width[arm],
            base_scale=solved.base_scale if arm == "repeat" else 0.0,
            wrong_group=wrong_group.label if arm == "wrong" else "", **common,
        )  # fmt: skip
    return specs


def name_of(build: Callable) -> str:
    """'package.module:function' of a builder function (its path in messages and runs.csv)."""
    return f"{getattr(build, '__module__', '?')}:{getattr(build, '__qualname__', repr(build))}"


def build_builder_arm(spec: ArmSpec, build: Callable | None = None) -> BuilderArm:
    """The model a builder ArmSpec (models.spec) describes: its arm's network at the spec's width
    (and base scale), initialised from torch's current random state. `build`: the builder
    function itself (else imported from the spec's path)."""
    shape = (spec.channels, 0, spec.classes)
    build = build or resolve(spec.builder, spec.builder_folder or None)
    net = Network(
        build,
        spec.builder,
        spec.group,
        shape,
        spec.repeat_mode or "swish",
        spec.repeat_structure or DEFAULT_STRUCTURE,
    )
    if spec.arm == "repeat":
        model = net.repeat(spec.width, spec.base_scale)
    elif spec.arm == "wrong":
        model = net.on(Group.parse(spec.wrong_group), spec.width)
    elif spec.arm == "wide":
        model = net.wide(spec.width)
    elif spec.group.trivial:
        model = net.plain(spec.width)
    else:
        model = net.gcnn(spec.width)
    own = Group.parse(spec.wrong_group) if spec.arm == "wrong" else spec.group  # the group it is built on
    return BuilderArm(
        model,
        spec.arm,
        own,
        spec.repeat_mode,
        spec.repeat_structure,
        spec.learnable_widths,
        spec.physical_widths,
    )


class BuilderArm(nn.Module):
    """A network from a builder with what training and counting read of an arm (models.arms.Arm).
    Input (B, in_channels, H, W) -> (B, classes) logits."""

    def __init__(self, net: nn.Module, arm: str, group: Group, repeat_mode, repeat_structure: str,
                 learnable_widths, physical_widths):  # fmt: skip
        super().__init__()
        self.net, self.arm, self.group = net, arm, group
        self.repeat_mode, self.repeat_structure = repeat_mode, repeat_structure
        self.learnable_widths, self.physical_widths = list(learnable_widths), list(physical_widths)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def export(self) -> nn.Module:
        """The network itself, put in eval mode (escnn then keeps its expanded filters); training
        puts it back in train mode at the next epoch, and state_dict is always train mode's."""
        self.net.eval()
        return self.net

    def state_dict(self, *args, **kwargs):
        """The train-mode state dict (escnn adds its expanded filters as buffers in eval mode)."""
        was = self.training
        self.train()
        try:
            return super().state_dict(*args, **kwargs)
        finally:
            self.train(was)
