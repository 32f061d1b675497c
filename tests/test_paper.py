"""The seed paper's protocol: the seven models' parameter counts, `augment = "paper"`, the
dry-run listing, and a one-epoch smoke run of studies/paper.toml on tiny embedded data."""

import math
from pathlib import Path

import pandas as pd
import pytest
import tomli_w
import torch

from ablate._compat import tomllib
from ablate.data.augment import augment, paper_augment
from ablate.data.sources import load_dataset
from ablate.models.arms import Group
from ablate.models.counting import count_params
from ablate.models.paper import build_paper_model
from ablate.models.repeat import RepeatConv2d
from ablate.report.__main__ import main as report_main
from ablate.run import main as run_main
from ablate.training.fused import FusedSeeds

ROOT = Path(__file__).resolve().parents[1]
KERNELS = [7, 5, 5, 5, 5, 5]
HEAD = 64  # MLP head: Linear(C, 64) + BatchNorm1d(64) + Linear(64, 10)


def head(channels: int) -> int:
    return channels * HEAD + HEAD + 2 * HEAD + HEAD * 10 + 10


def baseline_count(widths) -> int:
    """Plain convs without bias, BatchNorm (2 per channel), the MLP head."""
    total, c_in = 0, 1
    for k, c in zip(KERNELS, widths):
        total += c_in * c * k * k + 2 * c
        c_in = c
    return total + head(c_in)


def gcnn_count(fields, n: int) -> int:
    """escnn counts basis coefficients. A C_N-equivariant kernel from one regular field to one
    regular field, restricted to angular frequencies |m| <= F on a ring, spans N (2F + 1) real
    dimensions (for each m, one complex dimension per input channel), and N at radius 0 (F = 0);
    from the trivial input field, 2F + 1 per ring and 1 at the centre. First layer: rings 0-3 with
    F = 0, 2, 3, 2 -> 1 + 5 + 7 + 5 = 18 per field; 5x5 layers: rings 0-2 with F = 0, 2, 2 ->
    N (1 + 5 + 5) = 11 N per field pair. InnerBatchNorm: 2 per field. GroupPooling leaves one
    channel per field for the head."""
    total, f_in = 18 * fields[0] + 2 * fields[0], fields[0]
    for f in fields[1:]:
        total += f_in * f * 11 * n + 2 * f
        f_in = f
    return total + head(f_in)


def repeat_count(base, physical) -> int:
    """The paper's Conv2dRepeat: base weights as the baseline's convs, swish alpha and beta per
    (T_out // c_out) x (T_in // c_in) block, one (alpha, beta) pair per side with a remainder, a
    bias and BatchNorm per physical channel, head on all of them."""
    total, t_in, c_in = 0, 1, 1
    for k, c, t in zip(KERNELS, base, physical):
        blocks = (t // c) * (t_in // c_in)
        remainders = 2 * (t % c > 0) + 2 * (t_in % c_in > 0)
        total += c * c_in * k * k + 2 * blocks + remainders + t + 2 * t
        t_in, c_in = t, c
    return total + head(t_in)


BASE = [22, 33, 45, 45, 67, 90]  # int(w / sqrt 2), w = 32, 48, 64, 64, 96, 128
EXPECTED = {  # written out from the functions above, checked against them and the built models
    ("plain", 1): 340_309,
    ("gcnn", 4): 304_154,
    ("repeat", 4): 352_987,
    ("gcnn", 8): 305_098,
    ("repeat", 8): 360_963,
    ("gcnn", 16): 301_746,
    ("repeat", 16): 372_179,
}
DERIVED = {
    ("plain", 1): baseline_count(BASE),
    ("gcnn", 4): gcnn_count([16, 24, 32, 32, 48, 64], 4),
    ("repeat", 4): repeat_count(BASE, [64, 96, 128, 128, 192, 256]),
    ("gcnn", 8): gcnn_count([11, 17, 23, 23, 34, 45], 8),  # round(w sqrt 2 / 2)
    ("repeat", 8): repeat_count(BASE, [90, 135, 181, 181, 271, 362]),  # int(w / sqrt 2 * 4)
    ("gcnn", 16): gcnn_count([8, 12, 16, 16, 24, 32], 16),
    ("repeat", 16): repeat_count(BASE, [128, 192, 256, 256, 384, 512]),
}


@pytest.mark.parametrize(("arm", "n"), list(EXPECTED))
def test_the_seven_models_have_the_derived_parameter_counts(arm, n):
    assert DERIVED[(arm, n)] == EXPECTED[(arm, n)]
    assert count_params(build_paper_model(arm, Group("C", n))) == EXPECTED[(arm, n)]


def digits(count=64) -> torch.Tensor:
    data = load_dataset("embedded", limit_test=count, subset="stratified", pad_to=29, pad="right-bottom")
    return data.x_test[:count]


def test_paper_augment_is_seeded_bounded_and_rotates_and_flips():
    x = digits()
    assert x.shape[-2:] == (29, 29) and x[..., 28, :].abs().sum() == 0  # padded right and bottom

    def run(seed):
        return augment(x, "paper", [torch.Generator().manual_seed(seed)])

    a, b, c = run(0), run(0), run(1)
    assert torch.equal(a, b) and not torch.allclose(a, c)
    assert a.shape == x.shape and a.min() >= 0 and a.max() <= 1
    assert a.sum() / x.sum() == pytest.approx(1.0, abs=0.05)  # mean ink preserved
    rows = torch.arange(29.0)

    def centroid(z):
        mass = z.sum(dim=(1, 2, 3))
        return torch.stack(
            [(z.sum(dim=(1, 3)) * rows).sum(1) / mass, (z.sum(dim=(1, 2)) * rows).sum(1) / mass], 1
        )

    assert (centroid(a) - centroid(x)).norm(dim=1).median() > 1.0  # the ink moved

    def corr(u, v):
        u, v = u.flatten() - u.mean(), v.flatten() - v.mean()
        return float(u @ v / (u.norm() * v.norm()))

    none = torch.zeros(len(x), 2, dtype=torch.bool)
    zero = torch.zeros(len(x))
    assert corr(paper_augment(x, zero, none), x) > 0.95  # x3 up and down: nearly the identity
    h_flip = none.clone()
    h_flip[:, 0] = True
    assert corr(paper_augment(x, zero, h_flip), x.flip(-1)) > 0.95 > corr(paper_augment(x, zero, h_flip), x)
    v_flip = none.clone()
    v_flip[:, 1] = True
    assert corr(paper_augment(x, zero, v_flip), x.flip(-2)) > 0.95
    turned = paper_augment(x, torch.full((len(x),), 90.0), none)  # counter-clockwise, about pixel 14
    # about pixel 14 of 29, a digit in rows/columns 0-27 lands in rows 1-28: rot90 shifted down by one
    assert corr(turned[..., 1:29, :28], torch.rot90(x[..., :28, :28], 1, dims=(2, 3))) > 0.9


def paper_study(tmp_path: Path, width: float = 1.0, train: int = 64) -> Path:
    """studies/paper.toml on `train` embedded training digits, one epoch, seed 42 only."""
    study = tomllib.loads((ROOT / "studies" / "paper.toml").read_text())
    study["data"].update(source="embedded", limit_train=train, limit_test=64, subset="stratified")
    study["models"].update(preset_width=width)
    study["train"].update(epochs=1, seeds=[42])
    study["run"].update(results=str(tmp_path / "results"), device="cpu", threads=2)
    path = tmp_path / "paper.toml"
    path.write_bytes(tomli_w.dumps(study).encode())
    return path


def listed(out: str) -> dict[str, list[str]]:
    """The dry run's model rows: model name -> its cells."""
    names = ["baseline"] + [f"c{n}{rep}" for n in (4, 8, 16) for rep in ("", "_rep")]
    return {
        name: next(line.split() for line in out.splitlines() if line.split()[1:2] == [name]) for name in names
    }


def test_dry_run_lists_the_seven_models_with_parameters_macs_batch_and_precision(tmp_path, capsys):
    assert run_main([str(paper_study(tmp_path)), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "7 runs in 7 cells (preset repeatnet-paper" in out and "batch 64, fp32" in out
    rows = listed(out)
    for (arm, n), count in EXPECTED.items():
        cells = rows["baseline" if arm == "plain" else f"c{n}" + ("_rep" if arm == "repeat" else "")]
        assert cells[2] == arm and int(cells[5]) == count and int(cells[6].replace(",", "")) > 1_000_000
        assert cells[10] == "1"  # seeds fused per cohort: one on the CPU (training.fusion)
    header = next(line.split() for line in out.splitlines() if line.split()[:2] == ["budget", "model"])
    assert header[10] == "fused"


def test_the_width_scaled_preset_keeps_counts_near_s_squared(tmp_path, capsys):
    assert run_main([str(paper_study(tmp_path, width=0.25)), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "width x 0.25" in out
    for (arm, n), count in EXPECTED.items():
        cells = listed(out)["baseline" if arm == "plain" else f"c{n}" + ("_rep" if arm == "repeat" else "")]
        assert abs(int(cells[5]) / (count / 16) - 1) <= 0.25, cells
        assert int(cells[5]) == count_params(build_paper_model(arm, Group("C", n), width=0.25))


def test_one_epoch_of_the_width_scaled_paper_study_runs_and_reports(tmp_path, capsys):
    path = paper_study(tmp_path, width=0.25, train=256)
    assert run_main([str(path)]) == 0
    runs = pd.read_csv(tmp_path / "results" / "paper" / "runs.csv")
    assert sorted(runs["model_name"]) == sorted(
        ["baseline", "c4", "c4_rep", "c8", "c8_rep", "c16", "c16_rep"]
    )
    assert (runs["precision"] == "fp32").all() and (runs["status"] == "ok").all()
    assert (runs["preset_width"] == 0.25).all()
    c16_rep = dict(zip(runs["model_name"], runs["n_params"]))["c16_rep"]
    assert c16_rep == count_params(build_paper_model("repeat", Group("C", 16), width=0.25))
    assert (runs["epochs"] == 1).all() and (runs["n_train"] == 256).all()
    capsys.readouterr()
    out = tmp_path / "figs"
    assert report_main(["--results", str(tmp_path / "results"), "--study", "paper", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    table = (out / "paper" / "table.md").read_text()
    assert "## The paper's table (width x 0.25)" in table and f"| c16_rep | {c16_rep:,} |" in table
    assert "Computed as the paper computes it" in printed and "seed 42's best-epoch" in printed
    assert "not parameter-matched" in table
    inexact = (runs.loc[runs["arm"] == "gcnn", "invariance_error"] > 0).any()  # 29x29: odd pooled maps
    assert ("turns are inexact after pooling" in table) == inexact  # said only where measured


def test_paper_remainder_rows_and_columns_are_the_swish_of_the_activated_core():
    torch.manual_seed(0)
    conv = RepeatConv2d(7, 11, 3, base_in=3, base_out=4, remainder="floor")  # r = 2 x 2, e = 3 and 1
    assert conv.alpha.shape == conv.beta.shape == (1, 4) and conv.rows.shape == conv.cols.shape == (2,)
    assert count_params(conv) == 4 * 3 * 9 + 2 * 4 + 2 + 2
    w, a, b = conv.weight, conv.alpha.view(2, 2), conv.beta.view(2, 2)

    def swish(x, alpha, beta):
        return alpha * x * torch.sigmoid(-beta * x)

    core = torch.cat(
        [torch.cat([swish(w, a[i, j], b[i, j]) for j in range(2)], dim=1) for i in range(2)], dim=0
    )  # (8, 6, 3, 3): block (i, j) uses scalar i * r_in + j
    rows = torch.cat([core, swish(core[:3], *conv.rows)], dim=0)  # the first 3 rows again
    full = torch.cat([rows, swish(rows[:, :1], *conv.cols)], dim=1)  # then the first column
    assert torch.allclose(conv.full_weight(), full) and conv.full_weight().shape == (11, 7, 3, 3)
    exact = RepeatConv2d(6, 8, 3, base_in=3, base_out=4, remainder="floor")
    assert exact.rows is None and exact.cols is None and count_params(exact) == 4 * 3 * 9 + 2 * 4


def test_paper_repeat_layer_starts_from_the_papers_distributions():
    torch.manual_seed(1)
    conv = RepeatConv2d(90, 362, 5, base_in=45, base_out=67, remainder="floor", bias=True)
    r = (362 // 67) * (90 // 45)
    w_bound = math.sqrt(6 / (45 * 25 + 67 * 25))  # xavier-uniform on (67, 45, 5, 5)
    assert conv.weight.abs().max() <= w_bound and conv.weight.abs().max() > 0.95 * w_bound
    assert float(conv.weight.detach().std()) == pytest.approx(w_bound / math.sqrt(3), rel=0.05)
    s_bound = math.sqrt(6 / (1 + r))  # xavier-uniform on (1, r_out * r_in)
    for scalars in (conv.alpha, conv.beta):
        assert scalars.shape == (1, r) and scalars.abs().max() <= s_bound and scalars.min() < 0
    assert conv.rows.min() >= 0 and conv.rows.max() < 1 and conv.cols is None  # 90 = 2 x 45
    assert torch.equal(conv.bias, torch.zeros(362))
    crop = RepeatConv2d(90, 362, 5, base_in=45, base_out=67)  # the package's own rule, unchanged
    assert crop.alpha.shape == (6, 2) and crop.remainder == "crop"


def test_the_paper_preset_uses_the_paper_remainder_and_fuses():
    model = build_paper_model("repeat", Group("C", 8), width=0.25)
    convs = [m for m in model.modules() if isinstance(m, RepeatConv2d)]
    assert convs and all(c.remainder == "floor" for c in convs)
    models = [build_paper_model("repeat", Group("C", 8), width=0.25).eval() for _ in range(2)]
    fused = FusedSeeds(models).eval()
    x = torch.rand(4, 2, 29, 29)
    with torch.no_grad():
        out = fused(x)
        for s, model in enumerate(models):  # seed s's slice is its own model's output
            assert torch.allclose(out[:, s], model(x[:, s : s + 1]), atol=1e-5)
