"""Checks of a user's network before anything trains (docs/models.md, "Your own network"): its
forward and a training step's backward on a probe batch, its logits' shape, the G-CNN's
invariance under its group's exact transformations measured against how much the logits vary
across inputs (naming the first layer that breaks it, and the input size where it explains it),
and the plain twin's convolution geometry against the G-CNN's. Every failure is a BuilderError of
one line naming the module path, the probe shape and what to try."""

from __future__ import annotations

import torch
from escnn import nn as enn
from torch import nn

from ablate.errors import AblateError
from ablate.models.arms import Group
from ablate.models.groups import GridSymmetry

PROBE_IMAGES = 4  # random images of the init-time checks
SPREAD_RATIO = 1e-2  # a change under the group above 1% of the logits' variation across inputs...
FLOAT_FLOOR = 1e-6  # ...and above float32 rounding (times 1 + max |logit|) is not invariance


class BuilderError(AblateError):
    """The builder cannot give the arms; one line naming the builder and what is wrong."""


def first_line(error: BaseException) -> str:
    """'RuntimeError: mat1 and mat2 shapes cannot be multiplied (4x96 and 24x32)'."""
    text = str(error).strip().splitlines()[0][:200] if str(error).strip() else ""
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def probe_batch(shape: tuple[int, int, int]) -> torch.Tensor:
    """(PROBE_IMAGES, channels, size, size) random images from a fixed seed; shape: (channels,
    size, classes)."""
    channels, size, _ = shape
    return torch.randn(PROBE_IMAGES, channels, size, size, generator=torch.Generator().manual_seed(0))


def forward(net: nn.Module, x: torch.Tensor, where: str) -> torch.Tensor:
    """net(x), a failure as one BuilderError line with the probe shape and a hint on input sizes."""
    try:
        return net(x)
    except Exception as error:  # the user's code: any error on a forward pass is theirs to see
        raise BuilderError(
            f"{where}: a forward pass on a probe batch of shape {tuple(x.shape)} raised {first_line(error)}; "
            f"is it built for another input size? Set [data] size or pad_to to the size it expects "
            f"(escnn's C8SteerableCNN example expects 29)"
        ) from None


def escnn_element(symmetry: GridSymmetry, group: Group):
    """The element of `group`'s escnn fibre group that acts on images as `symmetry` does
    (torch.rot90's quarter turn is escnn's rotation by N / 4 steps; the mirror is its flip)."""
    fiber = group.gspace().fibergroup
    turn = symmetry.quarter_turns * group.order // 4
    if group.kind == "C":
        return fiber.element(turn)
    rotation = fiber.element((0, turn))
    return rotation @ fiber.element((1, 0)) if symmetry.mirrored else rotation


@torch.no_grad()
def check_outputs(
    net: nn.Module, where: str, shape: tuple[int, int, int], invariant_to: Group | None = None
) -> None:
    """BuilderError unless `net` (eval mode) maps a probe batch to (PROBE_IMAGES, classes) logits
    and, with `invariant_to`, changes them under each of that group's exact transformations by at
    most SPREAD_RATIO of their variation across the probe images (and FLOAT_FLOOR x (1 + max
    |logit|): rounding); the error names the first layer whose output breaks it."""
    x = probe_batch(shape)
    was = net.training
    net.eval()
    try:
        logits = forward(net, x, where)
        if tuple(logits.shape) != (PROBE_IMAGES, shape[2]):
            raise BuilderError(
                f"{where} maps images {tuple(x.shape)} to {tuple(logits.shape)}, "
                f"expected ({PROBE_IMAGES}, {shape[2]})"
            )
        for transform in invariant_to.transformations if invariant_to else ():
            _check_invariance(net, x, logits, transform, invariant_to, where)
    finally:
        net.train(was)


def _check_invariance(net, x, logits, transform: GridSymmetry, group: Group, where: str) -> None:
    change = float((forward(net, transform.apply(x), where) - logits).abs().max())
    spread = float((logits - logits.mean(dim=0)).abs().max())
    allowed = max(SPREAD_RATIO * spread, FLOAT_FLOOR * (1 + float(logits.abs().max())))
    if change <= allowed:
        return
    layer = first_broken_layer(net, x, transform, group)
    raise BuilderError(
        f"{where} is not invariant to {transform.name} at init: logits change by {change:.2g}, against "
        f"{spread:.2g} between images (allowed {allowed:.2g}){layer}"
    )


def first_broken_layer(net: nn.Module, x: torch.Tensor, transform: GridSymmetry, group: Group) -> str:
    """'; the first layer whose output breaks it: features.3 (PointwiseMaxPool2D, a 27x27 map in
    ...)', from escnn's own transformation of each equivariant module's output; '' when none
    (the break is after the last escnn module)."""
    outputs: dict[str, list] = {}
    hooks = [
        module.register_forward_hook(lambda m, i, o, name=name: outputs.setdefault(name, []).append((i, o)))
        for name, module in net.named_modules()
        if isinstance(module, enn.EquivariantModule) and not isinstance(module, enn.SequentialModule)
    ]
    try:
        net(x), net(transform.apply(x))
    finally:
        for hook in hooks:
            hook.remove()
    element = escnn_element(transform, group)
    for name, pair in outputs.items():
        if len(pair) != 2 or not isinstance(pair[0][1], enn.GeometricTensor):
            continue
        (inputs, plain), (_, turned) = pair
        if plain.type.fibergroup != element.group:  # after a RestrictionModule: another group
            continue
        expected = plain.transform(element).tensor
        if expected.shape != turned.tensor.shape or (expected - turned.tensor).abs().max() > 1e-4 * (
            1 + expected.abs().max()
        ):
            module = net.get_submodule(name)
            hint = _grid_hint(module, inputs)
            return f"; the first layer whose output breaks it: {name} ({type(module).__name__}{hint})"
    return ""


def _grid_hint(module: nn.Module, inputs: tuple) -> str:
    """', which samples a 28x28 map on an uneven grid: ...' where a strided layer's input size
    explains the break, else ''."""
    tensor = inputs[0].tensor if inputs and isinstance(inputs[0], enn.GeometricTensor) else None
    stride = getattr(module, "stride", 1)
    stride = stride[0] if isinstance(stride, tuple) else stride
    if tensor is None or not stride or stride == 1:
        return ""
    size = tensor.shape[-1]
    kernel = getattr(module, "kernel_size", None) or getattr(module, "filter_size", None) or 1
    kernel = kernel[0] if isinstance(kernel, tuple) else kernel
    padding = getattr(module, "padding", 0)
    padding = padding[0] if isinstance(padding, tuple) else padding
    if (size + 2 * padding - kernel) % stride == 0:
        return ""
    return (
        f", stride {stride} on a {size}x{size} map: its samples are not symmetric about the centre, so turns "
        f"are inexact; an input one pixel larger or smaller (e.g. [data] pad_to) makes them exact"
    )


def check_trains(net: nn.Module, where: str, shape: tuple[int, int, int]) -> None:
    """BuilderError unless a training step's forward and backward run on a probe batch (train mode;
    in-place operations after a module that saves its output fail here, not in training)."""
    was = net.training
    net.train()
    x = probe_batch(shape)
    try:
        logits = forward(net, x, where)
        try:
            logits.float().square().mean().backward()
        except Exception as error:
            raise BuilderError(
                f"{where}: the backward pass of a training step on a probe batch of shape {tuple(x.shape)} "
                f"raised {first_line(error)}"
            ) from None
    finally:
        net.zero_grad(set_to_none=True)
        net.train(was)


def conv_geometry(net: nn.Module) -> dict[str, tuple]:
    """Per R2Conv of a network (by path): its kernel size, stride, padding and dilation."""
    return {
        name: (m.kernel_size, m.stride, m.padding, m.dilation)
        for name, m in net.named_modules()
        if isinstance(m, enn.R2Conv)
    }


def check_geometry(gcnn: nn.Module, plain: nn.Module, where: str) -> None:
    """BuilderError unless the plain build's R2Convs, in module order, have the G-CNN's geometry:
    else the plain arm is not the G-CNN's plain twin (e.g. a builder that picks 5x5 kernels for
    N = 1). Paths may differ (a builder that skips a RestrictionModule on the trivial group)."""
    ours, theirs = conv_geometry(plain), conv_geometry(gcnn)
    if len(ours) != len(theirs):
        raise BuilderError(
            f"{where}: the plain build (trivial group) has {len(ours)} convolutions, the G-CNN "
            f"{len(theirs)}; the builder must build the same layers on every gspace"
        )
    names = ("kernel", "stride", "padding", "dilation")
    for (path, geometry), mine_all in zip(theirs.items(), ours.values()):
        for name, mine, wanted in zip(names, mine_all, geometry):
            if mine != wanted:
                raise BuilderError(
                    f"{where}: the plain build's {path} has {name} {mine} where the G-CNN's has {wanted}: "
                    "its plain arm would not be the G-CNN's plain twin; build the same geometry on every "
                    "gspace"
                )
