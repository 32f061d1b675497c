"""Model triplets: budget matching, the RepeatConv2d formula, G-CNN invariance and export."""

import itertools
import math

import pytest
import torch
from torch import nn

from ablate.models.arms import Group
from ablate.models.backbone import BACKBONES
from ablate.models.counting import count_macs, count_params
from ablate.models.gcnn import GCNN, gcnn_params
from ablate.models.repeat import RepeatConv2d
from tests.triplets import build_triplet


@pytest.mark.parametrize("backbone", ["repeatnet", "z2cnn"])
@pytest.mark.parametrize("budget", [10_000, 50_000, 350_000])
def test_counts_within_tolerance_and_equal_physical_widths(backbone, budget):
    models = build_triplet(budget, backbone=backbone, tolerance=0.02)
    assert set(models) == {"plain", "repeat", "gcnn"}
    for arm, model in models.items():
        n = sum(p.numel() for p in model.parameters() if p.requires_grad)
        assert abs(n - budget) <= 0.02 * budget, (arm, n)
    assert models["repeat"].physical_widths == models["gcnn"].physical_widths
    assert models["gcnn"].physical_widths == [4 * f for f in models["gcnn"].learnable_widths]
    # the repeat arm really repeats: every layer's physical width exceeds its base width
    assert all(t > c for t, c in zip(models["repeat"].physical_widths, models["repeat"].learnable_widths))


def test_escnn_counts_are_bilinear_in_fields():
    backbone = BACKBONES["repeatnet"]
    for fields in ([1, 1, 1, 1, 1, 1], [2, 3, 1, 4, 2, 5]):
        assert count_params(GCNN(backbone, fields)) == gcnn_params(backbone, fields)


def test_infeasible_budget_is_a_clear_value_error():
    with pytest.raises(ValueError, match=r"repeat: budget 2000 .* nearest reachable count is \d+"):
        build_triplet(2000)
    with pytest.raises(ValueError, match="repeat_mode"):
        build_triplet(50_000, repeat_mode="rotate")


def test_triplet_at_350k_builds_within_tolerance_and_physically_matched():
    models = build_triplet(350_000)  # how long it takes is a benchmark's business, not a test's
    for arm, model in models.items():
        assert abs(count_params(model) - 350_000) <= 0.02 * 350_000, arm
    assert models["repeat"].physical_widths == models["gcnn"].physical_widths


def _explicit_full_weight(layer: RepeatConv2d) -> torch.Tensor:
    """The formula written out block by block."""
    w = layer.weight
    c_out, c_in, k, _ = w.shape
    full = torch.zeros(layer.r_out * c_out, layer.r_in * c_in, k, k)
    for i in range(layer.r_out):
        for j in range(layer.r_in):
            if layer.mode == "tile":
                block = w
            elif layer.mode == "scale":
                block = layer.alpha[i, j] * w
            else:
                block = layer.alpha[i, j] * w * torch.sigmoid(-layer.beta[i, j] * w)
            full[i * c_out : (i + 1) * c_out, j * c_in : (j + 1) * c_in] = block
    return full[: layer.out_channels, : layer.in_channels]


@pytest.mark.parametrize("mode", ["swish", "scale", "tile"])
def test_full_weight_matches_double_loop_non_divisible(mode):
    torch.manual_seed(0)
    layer = RepeatConv2d(12, 12, 3, base_in=5, base_out=5, mode=mode, padding=1)
    assert (layer.r_out, layer.r_in) == (3, 3)
    assert layer.weight.shape == (5, 5, 3, 3)
    if mode != "tile":
        assert layer.alpha.shape == (3, 3)
    assert hasattr(layer, "beta") == (mode == "swish") and hasattr(layer, "alpha") == (mode != "tile")
    full = layer.full_weight()
    assert full.shape == (12, 12, 3, 3)
    assert torch.allclose(full, _explicit_full_weight(layer), atol=1e-7)
    # rectangular, different base on each side
    wide = RepeatConv2d(7, 10, 5, base_in=3, base_out=4, mode=mode)
    assert torch.allclose(wide.full_weight(), _explicit_full_weight(wide), atol=1e-7)


@pytest.mark.parametrize("mode", ["swish", "scale", "tile"])
def test_gradients_reach_base_weight_and_scalars(mode):
    layer = RepeatConv2d(12, 12, 3, base_in=5, base_out=5, mode=mode, padding=1)
    layer(torch.randn(2, 12, 8, 8)).square().sum().backward()
    assert layer.weight.grad is not None and layer.weight.grad.abs().sum() > 0
    for name in ("alpha", "beta"):
        if hasattr(layer, name):
            assert getattr(layer, name).grad.abs().sum() > 0


def test_scalar_init_is_xavier_uniform_over_blocks():
    layer = RepeatConv2d(40, 40, 3, base_in=4, base_out=4, mode="swish")
    bound = math.sqrt(6.0 / (10 + 10))
    for scalars in (layer.alpha, layer.beta):
        assert scalars.abs().max() <= bound and scalars.std() > bound / 4


def test_tile_with_single_block_equals_conv2d():
    layer = RepeatConv2d(3, 6, 5, base_in=3, base_out=6, mode="tile", padding=2)
    conv = nn.Conv2d(3, 6, 5, padding=2, bias=False)
    conv.weight.data.copy_(layer.weight.data)
    x = torch.randn(4, 3, 12, 12)
    assert torch.allclose(layer(x), conv(x), atol=1e-6)


@pytest.mark.parametrize("backbone", ["repeatnet", "z2cnn"])
def test_gcnn_is_invariant_to_quarter_turns_and_export_matches(backbone):
    torch.manual_seed(0)
    model = build_triplet(20_000, backbone=backbone)["gcnn"]
    model.train()
    model(torch.rand(16, 1, 28, 28))  # move BatchNorm statistics away from their defaults
    model.eval()
    x = torch.rand(5, 1, 28, 28)
    with torch.no_grad():
        logits = model(x)
        exported = model.export()
        assert torch.allclose(exported(x), logits, atol=1e-5, rtol=1e-5)
        for k in (1, 2, 3):
            turned = model(torch.rot90(x, k, dims=(2, 3)))
            assert (turned - logits).norm() / logits.norm() < 1e-4
    from escnn.nn import EquivariantModule

    assert not any(isinstance(m, EquivariantModule) for m in exported.modules())


def test_plain_cnn_is_not_invariant():
    torch.manual_seed(0)
    model = build_triplet(20_000)["plain"].eval()
    x = torch.rand(5, 1, 28, 28)
    with torch.no_grad():
        logits, turned = model(x), model(torch.rot90(x, 1, dims=(2, 3)))
    assert (turned - logits).norm() / logits.norm() > 1e-3


@pytest.mark.parametrize("backbone", ["repeatnet", "z2cnn"])
def test_forward_shapes_for_batch_sizes_1_and_7(backbone):
    models = build_triplet(10_000, backbone=backbone)
    for (arm, model), batch in itertools.product(models.items(), (1, 7)):
        model.eval()  # BatchNorm1d cannot train on a batch of one
        assert model(torch.rand(batch, 1, 28, 28)).shape == (batch, 10), arm


def test_the_arms_widths_and_macs():
    models = build_triplet(50_000)
    macs = {arm: count_macs(m) for arm, m in models.items()}
    assert all(n > 0 for n in macs.values()) and all(m.arm == arm for arm, m in models.items())
    assert models["gcnn"].group == Group("C", 4) and models["repeat"].repeat_mode == "swish"
    assert list(models["repeat"].physical_widths) == list(models["gcnn"].physical_widths)
    # same parameters, physically larger network: about N-fold the width costs ~N^2/N more MACs
    assert macs["repeat"] > 3 * macs["plain"]
    # repeat and G-CNN have the same conv shapes, so (nearly) the same MACs
    assert abs(macs["repeat"] - macs["gcnn"]) < 0.01 * macs["gcnn"]
    # MACs of the plain net written out from its layer sizes
    plain = models["plain"]
    sizes = plain.backbone.feature_sizes(28)
    expected, c_in = 0, 1
    for layer, width, (conv_size, _) in zip(plain.backbone.layers, plain.physical_widths, sizes):
        expected += conv_size**2 * width * c_in * layer.kernel**2
        c_in = width
    expected += c_in * 64 + 64 * 10
    assert macs["plain"] == expected


def test_backbones_keep_pooled_maps_even_on_28x28():
    repeatnet, z2cnn = BACKBONES["repeatnet"], BACKBONES["z2cnn"]
    assert repeatnet.feature_sizes(28) == [(24, 24), (24, 12), (12, 12), (12, 6), (6, 6), (2, 2)]
    assert z2cnn.feature_sizes(28) == [(26, 26), (24, 12), (10, 10), (8, 8), (6, 6), (4, 4)]
    repeatnet.check_input_size(28)
    z2cnn.check_input_size(28)
    with pytest.raises(ValueError, match="layer 2 gives a 23x23 map"):
        repeatnet.check_input_size(27)  # an odd map before a pool would break exact 90-degree turns


@pytest.mark.parametrize("backbone", ["repeatnet", "z2cnn"])
def test_every_arm_honours_one_interface_and_exports_to_plain_torch(backbone):
    from escnn.nn import EquivariantModule

    from ablate.models.arms import Arm

    torch.manual_seed(0)
    x = torch.rand(6, 1, 28, 28)
    for arm, model in build_triplet(20_000, backbone=backbone).items():
        assert isinstance(model, Arm) and model.arm == arm
        model.train()
        model(torch.rand(16, 1, 28, 28))  # move BatchNorm statistics off their initial values
        exported = model.export()
        assert model.training, f"{arm}: export changed the model's mode"
        assert not exported.training
        assert not any(isinstance(m, (RepeatConv2d, EquivariantModule)) for m in exported.modules()), arm
        model.eval()
        with torch.no_grad():
            assert torch.allclose(exported(x), model(x), atol=1e-5), arm
