"""One group value (issue 40): the group carries its gspace and its exact transformations, D1 (the
mirror group) is buildable and is not the trivial group, a C2 G-CNN is tested with its own half
turn, and a group with no exact transformation says so."""

import math

import pandas as pd
import pytest
import torch

import ablate
from ablate.data.sources import load_dataset
from ablate.models.arms import Group
from ablate.models.backbone import backbone_from_table
from ablate.models.gcnn import GCNN
from ablate.models.groups import EXACT_GROUPS, GridSymmetry
from ablate.run import main
from ablate.study.schema import parse_study
from ablate.training.evaluate import evaluate

SMALL = backbone_from_table(kernels=[5, 3], widths=[4, 6], pool_after=[True, False], hidden=8)
X = torch.rand(6, 1, 16, 16, generator=torch.Generator().manual_seed(0))
TURN90, HALF, MIRROR = GridSymmetry(1), GridSymmetry(2), GridSymmetry(0, mirrored=True)


def change(model: torch.nn.Module, transform: GridSymmetry) -> float:
    """Largest logit change under `transform` of the test images X, model in eval mode."""
    model.eval()
    with torch.no_grad():
        return float((model(transform.apply(X)) - model(X)).abs().max())


def test_each_group_holds_the_grid_symmetries_it_should():
    assert Group("C", 1).trivial and not Group("D", 1).trivial and Group("D", 1) != Group("C", 1)
    assert Group("D", 1).size == 2 and Group.parse("D1") == Group("D", 1) and Group.parse("C2").size == 2
    assert Group("C", 2).transformations == (HALF,)
    assert set(Group("C", 8).transformations) == {TURN90, HALF, GridSymmetry(3)}
    assert Group("D", 1).transformations == (MIRROR,)
    assert set(Group("D", 2).transformations) == {HALF, MIRROR, GridSymmetry(2, mirrored=True)}
    assert len(Group("D", 4).transformations) == 7 and Group("D", 12).exact == Group("D", 4)
    assert [g.invariance_column for g in EXACT_GROUPS] == [
        f"invariance_{g}" for g in ("C2", "C4", "D1", "D2", "D4")
    ]
    assert all(t.mirrored for t in Group("D", 2).outside(Group("C", 4)))  # every turn D2 holds is C4's
    assert set(Group("C", 4).outside(Group("D", 2))) == {
        TURN90,
        GridSymmetry(3),
    }  # D2 lacks the quarter turns
    for label in ("C1", "C0", "E4", "D", "C2x"):
        with pytest.raises(ValueError, match="expected C and an order >= 2 or D and an order >= 1"):
            Group.parse(label)


def test_the_gspace_is_escnns_and_comes_back_as_the_same_group():
    for group in (Group("C", 1), Group("C", 2), Group("C", 4), Group("D", 1), Group("D", 2), Group("D", 8)):
        assert Group.parse(group.gspace()) == group, group  # a gspace is accepted wherever a Group is
    assert Group("D", 1).gspace().fibergroup.order() == 2 and Group("C", 1).gspace().fibergroup.order() == 1


def test_a_group_without_an_exact_transformation_says_so_and_is_not_tested_with_a_wrong_one():
    c3 = Group("C", 3)
    assert c3.transformations == () and c3.invariance_column == ""
    assert "C3 holds no transformation of the pixel grid but the identity" in c3.no_exact_note
    assert Group("C", 4).no_exact_note == "" and Group("C", 1).no_exact_note == ""
    data = load_dataset("embedded", limit_train=160, limit_test=48)
    torch.manual_seed(0)
    scores = evaluate(GCNN(SMALL, [2, 2], c3), data, invariance=True)
    assert math.isnan(scores["invariance_error"]) and scores["invariance_error_any"] >= 0


@pytest.mark.parametrize("label", ["C2", "D1"])
def test_a_gcnn_is_exactly_invariant_to_its_own_group_and_not_to_a_turn_it_lacks(label):
    torch.manual_seed(0)
    group = Group.parse(label)
    model = GCNN(SMALL, [3, 4], group)
    assert model.physical_widths == [6, 8]  # |G| = 2 for both
    for t in group.transformations:
        assert change(model, t) < 1e-5, t.name
    assert change(model, TURN90) > 1e-3  # a quarter turn is in neither group
    if label == "D1":
        assert change(model, HALF) > 1e-3  # the mirror group holds no turn


def test_evaluation_reads_each_designs_group_its_own_column():
    """The bug of issue 40: a C2 G-CNN was tested with a 90-degree turn, outside C2. Now each
    subgroup has its column and invariance_error is the model's own group's."""
    torch.manual_seed(0)
    data = load_dataset("embedded", limit_train=160, limit_test=200)
    model = GCNN(SMALL, [3, 4], Group("C", 2))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for step in range(30):  # predictions that depend on the image: some turn with it
        batch = slice(32 * (step % 5), 32 * (step % 5 + 1))
        loss = torch.nn.functional.cross_entropy(model(data.x_train[batch]), data.y_train[batch])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    scores = evaluate(model, data, invariance=True)
    assert scores["invariance_C2"] == 0 and scores["invariance_error"] == 0
    assert scores["invariance_C4"] > 0 and scores["invariance_D1"] > 0  # a quarter turn, the mirror: not C2's
    assert scores["orbit_error_C2"] == scores["test_error"]  # averaging over its own group changes nothing
    net = model.export()
    with torch.no_grad():  # the C4 orbit average, written out: logits of the four turns
        mean = torch.stack([net(torch.rot90(data.x_test, k, dims=(2, 3))) for k in range(4)]).mean(0)
    assert scores["orbit_error_C4"] == pytest.approx(float((mean.argmax(1) != data.y_test).float().mean()))


def test_a_c2_and_a_d1_study_train_and_record_their_own_groups_invariance(tiny_study):
    path = tiny_study(name="c2d1", seeds="[0]", epochs=1)
    text = path.read_text()
    path.write_text(text.replace("[models]\n", '[models]\ngroup = "D"\ngroup_order = [1, 2]\n'))
    assert main([str(path)]) == 0
    runs = pd.read_csv(path.parent / "results" / "c2d1" / "runs.csv")
    gcnn = runs[runs["arm"] == "gcnn"].set_index("group_order")
    assert sorted(gcnn.index) == [1, 2] and (gcnn["group"] == "D").all()
    assert gcnn.loc[1, "invariance_D1"] == 0 and gcnn.loc[2, "invariance_D2"] == 0  # after training
    assert (gcnn["invariance_error"] == 0).all()
    plain = runs[runs["arm"] == "plain"]
    assert len(plain) == 1 and plain["group"].tolist() == ["C"] and plain["group_order"].tolist() == [1]  # C1
    assert (
        plain["invariance_error"].isna().all()
        and plain[["invariance_C2", "invariance_D1"]].notna().all().all()
    )
    c2 = tiny_study(name="c2", seeds="[0]", epochs=1)
    c2.write_text(c2.read_text().replace("[models]\n", "[models]\ngroup_order = 2\n"))
    assert main([str(c2)]) == 0
    c2_gcnn = pd.read_csv(c2.parent / "results" / "c2" / "runs.csv").query("arm == 'gcnn'")
    assert (c2_gcnn["invariance_C2"] == 0).all() and (c2_gcnn["invariance_error"] == 0).all()


def test_the_study_file_refuses_c1_and_accepts_d1():
    base = {"name": "s", "models": {"budgets": [5000]}, "train": {"seeds": [0]}}
    d1 = parse_study(base | {"models": {"budgets": [5000], "group": "D", "group_order": 1}})
    assert d1.models.groups == [Group("D", 1)]
    with pytest.raises(
        ablate.errors.StudyError, match=r"models.group_order: expected N >= 2 for C_N \(C1 is no group"
    ):
        parse_study(base | {"models": {"budgets": [5000], "group_order": 1}})


def test_a_builders_c2_and_d1_gcnns_are_invariant_to_their_own_group():
    for label in ("C2", "D1"):
        torch.manual_seed(0)
        t = ablate.triplet("ablate.models.zoo:equivariant_resnet", 20_000, group=Group.parse(label).gspace())
        assert all(abs(n - 20_000) <= 400 for n in t.counts.values()), (label, t.counts)
        x = torch.randn(4, 1, 28, 28, generator=torch.Generator().manual_seed(3))
        t.gcnn.eval()
        with torch.no_grad():
            base = t.gcnn(x)
            for transform in Group.parse(label).transformations:
                assert float((t.gcnn(transform.apply(x)) - base).abs().max()) < 1e-4, (label, transform.name)
            assert float((t.gcnn(TURN90.apply(x)) - base).abs().max()) > 1e-4, label
