"""The networks the field writes, as their authors wrote them (issue 41): networks in the style of
escnn's examples and e2cnn_experiments go through all three arms, or are refused in one line with
the reason, never with a traceback."""

import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from escnn import nn as enn

import ablate
from ablate.models.arms import Group
from ablate.models.copies import CopyMax
from ablate.models.twin import CHANNELWISE, FieldMax
from ablate.run import main
from ablate.study.schema import load_study

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
sys.path.insert(0, str(TESTS))  # tests/builders.py, as a study file's folder is on the path

import builders  # noqa: E402


def trains_a_step(model: torch.nn.Module, size: int) -> None:
    """One Adam step of a training batch, then the weights moved (a backward that runs)."""
    model.train()
    x = torch.randn(8, 1, size, size, generator=torch.Generator().manual_seed(4))
    before = [p.detach().clone() for p in model.parameters()]
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    F.cross_entropy(model(x), torch.arange(8) % 10).backward()
    optimizer.step()
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))


def invariant(model: torch.nn.Module, group: str, size: int) -> bool:
    model.eval()
    x = torch.randn(4, 1, size, size, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        base = model(x)
        return all(
            float((model(t.apply(x)) - base).abs().max()) <= 1e-4 * (1 + float(base.abs().max()))
            for t in Group.parse(group).transformations
        )


CASES = {  # builder: (group, input size, tolerance)
    "masked_steerable": ("C4", 29, 0.1),  # an input MaskModule, built for 29 px
    "pooled_elu": ("C4", 28, 0.02),  # GroupPooling, then torch's ELU(inplace=True) on its output
    "restricted": ("C8", 28, 0.02),  # RestrictionModule and DisentangleModule before the last block
    "quotient": ("C8", 28, 0.02),  # quotient-representation fields
}


@pytest.mark.parametrize("name", list(CASES))
def test_networks_in_the_fields_style_give_budget_matched_triplets_that_train(name):
    group, size, tolerance = CASES[name]
    for repeat_structure in ("paper", "matched"):
        torch.manual_seed(0)
        t = ablate.triplet(
            getattr(builders, name), 20_000, group=group, size=size, tolerance=tolerance,
            repeat_structure=repeat_structure,
        )  # fmt: skip
        assert all(abs(n - 20_000) <= tolerance * 20_000 for n in t.counts.values()), (name, t.counts)
        assert t.repeat.physical_widths == t.gcnn.physical_widths
        for arm in ("plain", "repeat", "gcnn"):
            trains_a_step(getattr(t, arm), size)
        assert invariant(t.gcnn, group, size)


def test_the_maxes_that_replace_group_pooling_survive_an_in_place_op_after_them():
    """FieldMax (the GroupPooling twin) and CopyMax (the matched control's) return a copy of their
    max: amax keeps its output for the backward, which ELU(inplace=True) would overwrite."""
    for module, channels in (
        (FieldMax(4), 12),
        (CopyMax(12, 3), 12),
        (CopyMax(10, 4), 10),
    ):  # 10: general path
        x = torch.randn(2, channels, 3, 3, requires_grad=True)
        out = torch.nn.ELU(inplace=True)(module(x))
        out.sum().backward()
        assert x.grad is not None and torch.isfinite(x.grad).all()
    raw = torch.randn(2, 8, 3, 3, requires_grad=True)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):  # what the copy prevents
        torch.nn.ELU(inplace=True)(raw.reshape(2, 2, 4, 3, 3).amax(dim=2)).sum().backward()


REFUSED = {
    # a network built for 29 px, probed at 28: its input mask fails on the forward pass
    "builders:masked_steerable": "a forward pass on a probe batch of shape (4, 1, 28, 28) raised "
    "AssertionError; is it built for another input size?",
    # 5x5 kernels on the trivial group, 3x3 on C4 (e2wrn's N = 1 build)
    "builders:kernel_by_group": "the plain build's features.0 has kernel 5 where the G-CNN's has 3",
    # a stride-2 pool exact at 29 px, probed at 28: the layer and the size are named
    "builders:built_for_29": "the first layer whose output breaks it: features.3 "
    "(PointwiseMaxPoolAntialiased2D, stride 2 on a 28x28 map",
    # a non-invariant network with tiny logits: its change under a turn is as large as its spread
    "builders:weak_not_invariant": "is not invariant to a 90-degree turn at init: logits change by",
}


@pytest.mark.parametrize("builder", list(REFUSED))
def test_a_network_that_cannot_be_a_triplet_is_one_line_and_exit_2(builder, tmp_path, capsys):
    study = tmp_path / "bad.toml"
    text = (ROOT / "studies" / "example_resnet.toml").read_text()
    text = text.replace("ablate.models.zoo:equivariant_resnet", builder)
    study.write_text(text.replace('device = "cpu"', f'device = "cpu"\nresults = "{tmp_path / "r"}"'))
    (tmp_path / "builders.py").write_text((TESTS / "builders.py").read_text())
    assert main([str(study), "--dry-run"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert (
        len(err) == 1
        and err[0].startswith(f"error: {study}: models.builder: ")
        and REFUSED[builder] in err[0]
    ), err


def test_a_network_built_for_29_pixels_trains_once_the_data_is_padded_to_29(tmp_path):
    t = ablate.triplet(builders.built_for_29, 20_000, group="C4", size=29)
    assert invariant(t.gcnn, "C4", 29) and all(abs(n - 20_000) <= 400 for n in t.counts.values())


def test_narrowing_the_arms_leaves_the_saved_study_as_its_file_says(tiny_study, tmp_path):
    path = tiny_study(name="narrow", seeds="[0]", epochs=1)
    assert main([str(path), "--arms", "gcnn"]) == 0
    saved = load_study(tmp_path / "results" / "narrow" / "study.toml")
    assert saved.models.arms == ["plain", "repeat", "gcnn"] == load_study(path).models.arms


def test_an_escnn_module_that_acts_on_whole_fields_is_refused_with_the_reason():
    with pytest.raises(
        ablate.errors.AblateError, match=r"NormPool cannot be twinned: it acts on whole fields"
    ):
        ablate.triplet(builders.norm_pooled, 20_000, group="C4")
    assert {enn.MaskModule, enn.RestrictionModule, enn.DisentangleModule} <= set(
        CHANNELWISE
    )  # kept as they are
