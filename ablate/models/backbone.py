"""The declarative backbone shared by the three arms: conv layers, pools and the head (torch-free:
the study schema reads it; the arms' modules build it)."""

from __future__ import annotations

from dataclasses import dataclass

from ablate.errors import expect_one_of


@dataclass(frozen=True)
class ConvLayer:
    """One conv block: conv(kernel, padding) -> BatchNorm -> activation [-> 2x2 max-pool].

    width: channels of this layer at width multiplier 1 (plain channels, G-CNN fields,
    repeat base channels).
    """

    kernel: int
    padding: int
    width: int
    pool_after: bool = False


@dataclass(frozen=True)
class Backbone:
    """A network shape that every arm instantiates with its own layer widths.

    head "mlp": global average pool -> Linear(C, hidden) -> BatchNorm1d -> activation ->
    Linear(hidden, classes). head "conv": a final conv (head_kernel, no padding) straight to
    `classes` channels, then global average pool.
    """

    name: str
    layers: tuple[ConvLayer, ...]
    head: str = "mlp"
    hidden: int = 64
    head_kernel: int = 0
    activation: str = "elu"

    @property
    def relative_widths(self) -> list[int]:
        return [layer.width for layer in self.layers]

    def feature_sizes(self, size: int = 28) -> list[tuple[int, int]]:
        """Per layer (size after the conv, size after its pool), for a square input of `size`."""
        sizes = []
        for layer in self.layers:
            size = size + 2 * layer.padding - layer.kernel + 1
            conv_size = size
            if layer.pool_after:
                size //= 2
            sizes.append((conv_size, size))
        return sizes

    def fits(self, size: int, exact_turns: bool = True) -> str | None:
        """Why inputs of size x size do not fit (None when they do): every map must stay positive,
        the conv head must fit, and (exact_turns) every pooled map must be even, so 90-degree turns
        and mirrors commute with pooling."""
        for index, (conv_size, _) in enumerate(self.feature_sizes(size)):
            layer = self.layers[index]
            if conv_size < 1 or (exact_turns and layer.pool_after and conv_size % 2):
                return (
                    f"layer {index + 1} gives a {conv_size}x{conv_size} map, expected a positive size, even "
                    "when pooled"
                )
        last = self.feature_sizes(size)[-1][1]
        if self.head == "conv" and last < self.head_kernel:
            return f"head kernel {self.head_kernel} needs a map of at least that size, found {last}x{last}"
        return None

    def check_input_size(self, size: int = 28, exact_turns: bool = True) -> None:
        """ValueError naming the nearest sizes that fit unless size x size inputs do (see fits)."""
        why = self.fits(size, exact_turns)
        if why is None:
            return
        near = sorted((s for s in range(max(1, size - 16), size + 17) if self.fits(s, exact_turns) is None),
                      key=lambda s: (abs(s - size), s))[:4]  # fmt: skip
        hint = (
            f"; sizes that fit near it: {', '.join(map(str, sorted(near)))} (set [data] size or pad_to)"
            if near
            else ""
        )
        raise ValueError(f"backbone {self.name} on {size}x{size} inputs: {why}{hint}")


def mlp_head_params(in_features: int, hidden: int, classes: int) -> int:
    """Learnable parameters of :func:`mlp_head`."""
    return in_features * hidden + hidden + 2 * hidden + hidden * classes + classes


REPEATNET = Backbone(
    name="repeatnet",
    layers=(
        ConvLayer(7, 1, 16),
        ConvLayer(5, 2, 24, pool_after=True),
        ConvLayer(5, 2, 32),
        ConvLayer(5, 2, 32, pool_after=True),
        ConvLayer(5, 2, 48),
        ConvLayer(5, 0, 64),
    ),
    head="mlp",
    hidden=64,
    activation="elu",
)

# Cohen & Welling (2016) Z2CNN: seven 3x3 layers of 20 channels, the last one a 4x4 conv to
# the classes; no padding; max-pool after layer 2; BatchNorm and ReLU.
Z2CNN = Backbone(
    name="z2cnn",
    layers=tuple(ConvLayer(3, 0, 20, pool_after=index == 1) for index in range(6)),
    head="conv",
    head_kernel=4,
    activation="relu",
)

BACKBONES = {b.name: b for b in (REPEATNET, Z2CNN)}


def get_backbone(name: str | Backbone) -> Backbone:
    """The backbone itself (one from a study file's [models.backbone] table), or the built-in
    called `name`; ValueError naming the built-ins otherwise."""
    if isinstance(name, Backbone):
        return name
    expect_one_of("backbone", name, BACKBONES)
    return BACKBONES[name]


def backbone_from_table(
    kernels: list[int],
    widths: list[int],
    pool_after: list[bool] | None = None,
    paddings: list[int] | None = None,
    head: str = "mlp",
    hidden: int = 64,
    head_kernel: int = 0,
    activation: str = "elu",
    name: str = "custom",
) -> Backbone:
    """A Backbone from a study file's [models.backbone] table: per layer a kernel, a relative
    width and whether a 2x2 max-pool follows (paddings default to kernel // 2, "same")."""
    pool_after = pool_after or [False] * len(kernels)
    paddings = paddings if paddings is not None else [k // 2 for k in kernels]
    layers = tuple(
        ConvLayer(k, p, w, bool(pool)) for k, p, w, pool in zip(kernels, paddings, widths, pool_after)
    )
    return Backbone(name, layers, head, hidden, head_kernel, activation)
