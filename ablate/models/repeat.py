"""The `repeat` arm: learnable repetition of a small base weight (Chavan et al., ICIP 2021)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ablate.errors import expect_one_of
from ablate.models.arms import DEFAULT_STRUCTURE, STRUCTURES, TRIVIAL_GROUP, Group
from ablate.models.arms import REPEAT_MODES as MODES
from ablate.models.backbone import Backbone, mlp_head_params
from ablate.models.copies import CopyBatchNorm, CopyMax
from ablate.models.plain import ConvNet

# the repeat controls (arms.STRUCTURES): "paper": BatchNorm on every physical channel, head on all
# of them (the seed paper's RepCNN); "matched": norm and head shaped like the G-CNN's (one scale
# and shift per base channel, shared by its copies; a max over the copies before the head), so
# the arm differs from the G-CNN only in how its copies are made.
SCALARS_PER_BLOCK = {"swish": 2, "scale": 1, "tile": 0}
# How a physical width that is not a multiple of the base width is filled: "crop" (this
# package's: ceil(T / c) blocks per side, cropped) or "floor" (the seed paper's Conv2dRepeat:
# floor(T / c) blocks, then the remainder rows and columns copied from the activated core
# through one swish scalar pair per side; see paper_repeat_weight)
REMAINDERS = ("crop", "floor")


def repeat_weight(
    w: torch.Tensor,
    alpha: torch.Tensor | None,
    beta: torch.Tensor | None,
    mode: str,
    r_out: int,
    r_in: int,
    out_channels: int,
    in_channels: int,
) -> torch.Tensor:
    """The full weight of RepeatConv2d from its base weight and block scalars.

    w: (..., c_out, c_in, k, k); alpha, beta: (..., r_out, r_in) (None where the mode has none);
    leading dims (e.g. a seed axis) are kept. Returns (..., out_channels, in_channels, k, k):
    the r_out x r_in grid of blocks, cropped.
    """
    lead = w.shape[:-4]
    if mode == "tile":
        full = w.repeat(*[1] * len(lead), r_out, r_in, 1, 1)
    else:
        scalars = (...,) + (slice(None), slice(None)) + (None,) * 4  # (..., r_out, r_in, 1, 1, 1, 1)
        base = w[(...,) + (None, None) + (slice(None),) * 4]  # (..., 1, 1, c_out, c_in, k, k)
        blocks = alpha[scalars] * base
        if mode == "swish":
            blocks = blocks * torch.sigmoid(-beta[scalars] * base)
        # (..., r_out, r_in, c_out, c_in, k, k) -> (..., r_out, c_out, r_in, c_in, k, k) -> full grid
        n = len(lead)
        order = [*range(n), n, n + 2, n + 1, n + 3, n + 4, n + 5]
        full = blocks.permute(*order).reshape(*lead, r_out * w.shape[-4], r_in * w.shape[-3], *w.shape[-2:])
    return full[..., :out_channels, :in_channels, :, :]


def _swish(x: torch.Tensor, pair: torch.Tensor) -> torch.Tensor:
    """pair[..., 0] * x * sigmoid(-pair[..., 1] * x), one (alpha, beta) per leading index of x."""
    alpha, beta = (pair[..., i].reshape(*pair.shape[:-1], 1, 1, 1, 1) for i in (0, 1))
    return alpha * x * torch.sigmoid(-beta * x)


def paper_repeat_weight(
    w: torch.Tensor,
    alpha: torch.Tensor,
    beta: torch.Tensor,
    rows: torch.Tensor | None,
    cols: torch.Tensor | None,
    out_channels: int,
    in_channels: int,
) -> torch.Tensor:
    """The seed paper's Conv2dRepeat weight (its RepeatNet code of 2021-01-13).

    w: (..., c_out, c_in, k, k); alpha, beta: (..., 1, r_out * r_in) with r = T // c, block (i, j)
    using entry i * r_in + j: the core is the r_out x r_in grid of alpha_ij * W * sigmoid(-beta_ij
    * W). Then the first e_out = T_out % c_out rows of that activated core are appended once more
    through swish with the pair rows (..., 2) = (alpha, beta), and the first e_in = T_in % c_in
    columns of the result through cols (..., 2). Returns (..., out_channels, in_channels, k, k).
    """
    lead, (c_out, c_in) = w.shape[:-4], w.shape[-4:-2]
    r_out, r_in = out_channels // c_out, in_channels // c_in
    grid = (*lead, r_out, r_in)
    full = repeat_weight(
        w, alpha.reshape(grid), beta.reshape(grid), "swish", *grid[-2:], r_out * c_out, r_in * c_in
    )
    if rows is not None:
        full = torch.cat([full, _swish(full[..., : out_channels - r_out * c_out, :, :, :], rows)], dim=-4)
    if cols is not None:
        full = torch.cat([full, _swish(full[..., :, : in_channels - r_in * c_in, :, :], cols)], dim=-3)
    return full


def is_batched(x: torch.Tensor) -> bool:
    """Whether x is one slice of a torch.func.vmap batch (its memory format cannot be queried)."""
    return torch._C._functorch.is_batchedtensor(x)


class RepeatConv2d(nn.Module):
    """A conv whose (T_out, T_in, k, k) weight tiles a base weight W (c_out, c_in, k, k).

    The full weight is an r_out x r_in grid of blocks (r = ceil(T / c)), cropped to T_out x T_in.
    Block (i, j) is, by mode:
      swish: alpha[i, j] * W * sigmoid(-beta[i, j] * W)   (the paper's learnable repetition)
      scale: alpha[i, j] * W
      tile:  W
    remainder "floor" (swish only): the seed paper's rule and initialisation instead (see
    paper_repeat_weight): floor(T / c) blocks with scalars of shape (1, r_out * r_in), one scalar
    pair per side for the remainder (`rows`, `cols`, uniform in [0, 1)), W xavier-uniform.
    Input (N, T_in, H, W) -> output (N, T_out, H', W').
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        base_in: int,
        base_out: int,
        mode: str = "swish",
        stride: int = 1,
        padding: int = 0,
        bias: bool = False,
        remainder: str = "crop",
        dilation: int = 1,
    ):
        super().__init__()
        expect_one_of("repeat_mode", mode, MODES)
        expect_one_of("remainder", remainder, REMAINDERS)
        if remainder == "floor" and mode != "swish":
            raise ValueError(f'RepeatConv2d: remainder = "floor" needs the swish mode, found {mode!r}')
        if not (1 <= base_in <= in_channels and 1 <= base_out <= out_channels):
            raise ValueError(
                f"RepeatConv2d: expected 1 <= base <= full channels, found base "
                f"{base_out}x{base_in} for full {out_channels}x{in_channels}"
            )
        self.in_channels, self.out_channels = in_channels, out_channels
        self.base_in, self.base_out = base_in, base_out
        self.kernel_size, self.stride, self.padding, self.mode = kernel_size, stride, padding, mode
        self.dilation = dilation
        self.remainder = remainder
        self.weight = nn.Parameter(torch.empty(base_out, base_in, kernel_size, kernel_size))
        if remainder == "floor":
            self._init_paper()
        else:
            self._init_crop()
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None

    def _init_crop(self) -> None:
        """This package's parameters and initialisation (remainder "crop")."""
        mode = self.mode
        self.r_in = math.ceil(self.in_channels / self.base_in)
        self.r_out = math.ceil(self.out_channels / self.base_out)
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))  # as nn.Conv2d on the base shape
        if mode in ("swish", "scale"):
            self.alpha = nn.Parameter(torch.empty(self.r_out, self.r_in))
            nn.init.xavier_uniform_(self.alpha)
        if mode == "swish":
            self.beta = nn.Parameter(torch.empty(self.r_out, self.r_in))
            nn.init.xavier_uniform_(self.beta)

    def _init_paper(self) -> None:
        """The seed paper's parameters and initialisation (remainder "floor")."""
        self.r_in, self.r_out = self.in_channels // self.base_in, self.out_channels // self.base_out
        nn.init.xavier_uniform_(self.weight)
        self.alpha = nn.Parameter(nn.init.xavier_uniform_(torch.empty(1, self.r_out * self.r_in)))
        self.beta = nn.Parameter(nn.init.xavier_uniform_(torch.empty(1, self.r_out * self.r_in)))
        extra = {"rows": self.out_channels % self.base_out, "cols": self.in_channels % self.base_in}
        for name, count in extra.items():
            setattr(self, name, nn.Parameter(torch.rand(2)) if count else None)

    def full_weight(self) -> torch.Tensor:
        """The physical (T_out, T_in, k, k) weight, built without a loop over blocks."""
        if self.remainder == "floor":
            return paper_repeat_weight(
                self.weight, self.alpha, self.beta, self.rows, self.cols, self.out_channels, self.in_channels
            )
        beta = getattr(self, "beta", None)
        alpha = getattr(self, "alpha", None)
        return repeat_weight(
            self.weight, alpha, beta, self.mode, self.r_out, self.r_in, self.out_channels, self.in_channels
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.full_weight()
        # keep oneDNN on its fast NHWC path (a vmapped tensor, one seed of many, cannot be asked)
        if not is_batched(x) and x.is_contiguous(memory_format=torch.channels_last):
            weight = weight.contiguous(memory_format=torch.channels_last)
        return F.conv2d(
            x, weight, self.bias, stride=self.stride, padding=self.padding, dilation=self.dilation
        )

    @torch.no_grad()
    def to_conv2d(self) -> nn.Conv2d:
        """An nn.Conv2d holding a copy of the full weight (same outputs, no repetition left)."""
        w = self.full_weight()
        conv = nn.Conv2d(
            self.in_channels,
            self.out_channels,
            self.kernel_size,
            stride=self.stride,
            padding=self.padding,
            dilation=self.dilation,
            bias=self.bias is not None,
            device=w.device,
            dtype=w.dtype,
        )
        conv.weight.copy_(w)
        if self.bias is not None:
            conv.bias.copy_(self.bias)
        return conv

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"base=({self.base_out}, {self.base_in}), repeats=({self.r_out}, {self.r_in}), "
            f"mode={self.mode}, remainder={self.remainder}, padding={self.padding}"
        )


class RepeatCNN(ConvNet):
    """The plain backbone at `physical_widths` channels, each conv a RepeatConv2d of `base_widths`.

    structure "paper": BatchNorm per physical channel and a head on all of them; the head's conv
    (z2cnn) also repeats its input side, base `base_widths[-1]` -> classes. "matched": CopyBatchNorm
    and a CopyMax before the head, which then reads `base_widths[-1]` channels. conv_bias: a
    learnable bias per physical channel in every block's conv (the seed paper's cN_rep models).
    remainder: RepeatConv2d's ("floor" for the seed paper's cN_rep).
    """

    arm = "repeat"

    def __init__(
        self,
        backbone: Backbone,
        physical_widths: Sequence[int],
        base_widths: Sequence[int],
        mode: str = "swish",
        classes: int = 10,
        group: Group = TRIVIAL_GROUP,
        repeat_structure: str = DEFAULT_STRUCTURE,
        conv_bias: bool = False,
        remainder: str = "crop",
        channels: int = 1,
    ):
        expect_one_of("repeat_structure", repeat_structure, STRUCTURES)
        bases = [channels, *base_widths, classes]

        def conv(index, c_in, c_out, kernel, padding, bias):
            return RepeatConv2d(
                c_in,
                c_out,
                kernel,
                base_in=bases[index],
                base_out=bases[index + 1],
                mode=mode,
                padding=padding,
                bias=bias,
                remainder=remainder,
            )

        extra = {}
        if repeat_structure == "matched":
            extra = {
                "norm_factory": lambda index, width: CopyBatchNorm(width, bases[index + 1]),
                "pre_head": CopyMax(physical_widths[-1], base_widths[-1]),
                "head_channels": base_widths[-1],
            }
        super().__init__(backbone, physical_widths, conv, classes, channels, conv_bias=conv_bias, **extra)
        self.learnable_widths = [int(b) for b in base_widths]
        self.repeat_mode = mode
        self.group = group  # the G-CNN's whose physical widths it has
        self.repeat_structure = repeat_structure

    def export(self) -> nn.Sequential:
        """The full-weight plain network in eval mode: every RepeatConv2d becomes an nn.Conv2d."""
        exported = super().export()
        targets = [
            (parent, name, child)
            for parent in exported.modules()
            for name, child in parent.named_children()
            if isinstance(child, (RepeatConv2d, CopyBatchNorm))
        ]
        for parent, name, child in targets:
            setattr(
                parent, name, child.to_conv2d() if isinstance(child, RepeatConv2d) else child.to_batch_norm()
            )
        return exported


def repeat_params(
    backbone: Backbone,
    physical_widths: Sequence[int],
    base_widths: Sequence[int],
    mode: str = "swish",
    classes: int = 10,
    repeat_structure: str = DEFAULT_STRUCTURE,
    conv_bias: bool = False,
    channels: int = 1,
) -> int:
    """Learnable parameters of RepeatCNN(...) without building it."""
    per_block = SCALARS_PER_BLOCK[mode]
    matched = repeat_structure == "matched"
    total, t_in, c_in = 0, channels, channels
    for layer, t_out, c_out in zip(backbone.layers, physical_widths, base_widths):
        blocks = math.ceil(t_out / c_out) * math.ceil(t_in / c_in)
        total += c_out * c_in * layer.kernel**2 + per_block * blocks + 2 * (c_out if matched else t_out)
        total += t_out if conv_bias else 0
        t_in, c_in = t_out, c_out
    if matched:  # the head reads one max per base channel
        t_in = c_in
    if backbone.head == "mlp":
        return total + mlp_head_params(t_in, backbone.hidden, classes)
    blocks = math.ceil(t_in / c_in)
    return total + classes * c_in * backbone.head_kernel**2 + per_block * blocks + classes
