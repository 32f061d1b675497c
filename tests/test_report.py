"""`python -m ablate.report` on synthetic results directories."""

import numpy as np
import pytest
from PIL import Image

from ablate import stats
from ablate.report import text
from ablate.report.__main__ import main
from ablate.report.figures import FIGURES
from ablate.results import RUN_COLUMNS, HistoryRow, RunRow, StudyResults
from ablate.study.schema import parse_study

MEANS = {"plain": 0.0503, "repeat": 0.0393, "gcnn": 0.0228}
KEYED = (
    "study",
    "run_key",
    "arm",
    "budget",
    "seed",
    "n_params",
    "macs",
    "group_order",
    "dataset",
    "n_train",
    "n_test",
    "epochs",
    "test_error",
    "invariance_error",
    "status",
    "train_seconds",
)
BLANK_ROW = {c: "" for c in RUN_COLUMNS if c not in KEYED}  # columns the report does not read


def write_study(
    root,
    name="synth",
    budgets=(10_000, 50_000),
    seeds=range(5),
    skip=(),
    rng_seed=0,
    epochs=3,
    study_seeds=None,
    errors=None,
):
    """A results folder as ablate.run writes it, with errors drawn around MEANS; `errors` maps
    (budget, arm) to given test errors instead, one per seed."""
    rng = np.random.default_rng(rng_seed)
    store = StudyResults(root, name)
    for budget in budgets:
        for arm, mean in MEANS.items():
            for seed in seeds:
                if (budget, arm, seed) in skip:
                    continue
                key = f"{name}-{budget}-{arm}-{seed}"
                error = float(rng.normal(mean, 0.002))
                if errors is not None:
                    error = float(errors[budget, arm][list(seeds).index(seed)])
                run = RunRow(
                    **BLANK_ROW,
                    study=name,
                    run_key=key,
                    arm=arm,
                    budget=budget,
                    seed=seed,
                    n_params=int(budget * (1 + rng.uniform(-0.01, 0.01))),
                    macs=budget * (40 if arm == "plain" else 400),
                    group_order=4,
                    dataset="embedded",
                    n_train=4000,
                    n_test=1000,
                    epochs=epochs,
                    test_error=error,
                    invariance_error=0.0 if arm == "gcnn" else 0.2,
                    status="ok",
                    train_seconds=1.0,
                )
                history = [
                    HistoryRow(
                        study=name,
                        run_key=key,
                        arm=arm,
                        budget=budget,
                        seed=seed,
                        epoch=e,
                        train_loss=1 / e,
                        train_error=error * (1 + 2 / e),
                        test_error=error * (1 + 1 / e),
                        lr=1e-3,
                        seconds=1.0,
                    )
                    for e in range(1, epochs + 1)
                ]
                store.record(run, history)
    listed = list(study_seeds if study_seeds is not None else seeds)
    store.write_study(
        parse_study({"name": name, "models": {"budgets": list(budgets)}, "train": {"seeds": listed}})
    )
    return store


def test_report_writes_every_file_and_matches_stats(tmp_path, capsys):
    store = write_study(tmp_path / "results")
    out = tmp_path / "figs"
    assert main(["--results", str(tmp_path / "results"), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    folder = out / "synth"
    drawn = [name for name in FIGURES if name != "sharing_or_symmetry"]  # a study without the wrong arm
    assert not (folder / "sharing_or_symmetry.png").exists()
    for name in drawn:
        png, pdf = folder / f"{name}.png", folder / f"{name}.pdf"
        with Image.open(png) as image:
            assert image.size[0] > 800 and image.size[1] > 500
            assert image.info["dpi"][0] == pytest.approx(200, abs=1)
            assert len(image.convert("RGB").getcolors(maxcolors=1 << 20)) > 50  # not a blank canvas
        data = pdf.read_bytes()
        assert data.startswith(b"%PDF") and len(data) > 5000
    table_md = (folder / "table.md").read_text()
    assert (folder / "table.tex").read_text().count(r"\begin{tabular}") == 2
    # the numbers in table.md are ablate.stats' numbers
    expected = stats.decompose(store.runs())
    for _, row in expected.iterrows():
        line = next(
            text
            for text in table_md.splitlines()
            if text.startswith(f"| {int(row['budget']):,} | {100 * row['gain_total']:.2f}")
        )
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert cells[4] == f"{100 * row['share_rep']:.1f}"
        assert cells[5] == text.format_interval(row["share_rep_lo_delta"], row["share_rep_hi_delta"])
        assert cells[2] == f"{100 * row['gain_rep']:.2f}" and cells[3] == f"{100 * row['gain_eq']:.2f}"
    summary = stats.arm_summary(store.runs()).set_index(["budget", "arm"])
    plain = summary.loc[(10_000, "plain")]
    assert f"{100 * plain['mean']:.2f} ± {100 * plain['sd']:.2f} (5)" in table_md
    sentence = text.headline_sentence(
        expected, 4, "rotated MNIST, 5k embedded digits", stats.pooled(store.runs(), by_budget_trend=True)
    )
    assert sentence in table_md and sentence in printed and sentence.startswith("Up to ")


def test_no_results_names_the_directory(tmp_path, capsys):
    assert main(["--results", str(tmp_path / "empty")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(tmp_path / "empty") in err and "python -m ablate.run" in err


def test_missing_runs_are_named_and_the_rest_reported(tmp_path, capsys):
    write_study(
        tmp_path / "results",
        budgets=(10_000,),
        seeds=range(3),
        skip={(10_000, "gcnn", 2)},
        study_seeds=range(3),
    )
    assert (
        main(["--results", str(tmp_path / "results"), "--out", str(tmp_path / "figs"), "--format", "png"])
        == 0
    )
    out = capsys.readouterr().out
    assert "1 runs of the study are missing: gcnn budget 10000 seed 2" in out
    assert (tmp_path / "figs" / "synth" / "gain_decomposition.png").exists()
    assert "missing: gcnn budget 10000 seed 2" in (tmp_path / "figs" / "synth" / "table.md").read_text()


def test_single_seed_gives_point_estimates_and_says_why(tmp_path, capsys):
    write_study(tmp_path / "results", budgets=(10_000,), seeds=[0])
    assert (
        main(["--results", str(tmp_path / "results"), "--out", str(tmp_path / "figs"), "--format", "png"])
        == 0
    )
    out = capsys.readouterr().out
    assert "need at least two ok seeds" in out
    table_md = (tmp_path / "figs" / "synth" / "table.md").read_text()
    assert "(1) |" in table_md and "Repetition share of the" not in table_md


@pytest.mark.parametrize(
    "content, message",
    [
        (b'\x00\x01\x02garbage\xff\n"unterminated', "expected a CSV written by ablate"),
        (
            b"name,score\nalice,3\n",
            "expected the columns of an ablate runs.csv, missing study, run_key, arm, budget, seed",
        ),
    ],
)
def test_corrupt_or_foreign_csv_gives_one_line(tmp_path, capsys, content, message):
    folder = tmp_path / "results" / "broken"
    folder.mkdir(parents=True)
    (folder / "runs.csv").write_bytes(content)
    assert main(["--results", str(tmp_path / "results"), "--study", "broken"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(folder / "runs.csv") in err and message in err


def test_bad_format_flag(tmp_path, capsys):
    assert main(["--results", str(tmp_path), "--format", "png,bmp"]) == 2
    assert "--format: expected" in capsys.readouterr().err


def test_figures_draw_on_the_axes_they_are_given(tmp_path):
    import matplotlib.pyplot as plt

    from ablate.report.analysis import analyse
    from ablate.report.figures import (
        fig_error_vs_params,
        fig_gain_decomposition,
        fig_invariance,
        fig_physical_size,
    )

    write_study(tmp_path / "results", seeds=range(3))
    report = analyse(tmp_path / "results" / "synth", n_boot=100, n_perm=0)
    fig, axes = plt.subplots(2, 3)
    for ax, make in zip(axes[0], (fig_error_vs_params, fig_physical_size)):
        assert make(report, ax=ax) is fig and ax.has_data()
    assert fig_invariance(report, axes=[axes[0, 2]]) is fig and axes[0, 2].has_data()
    assert fig_gain_decomposition(report, axes=axes[1, :2]) is fig
    assert axes[1, 0].has_data() and axes[1, 1].has_data() and not axes[1, 2].has_data()
    plt.close(fig)


@pytest.mark.parametrize(
    "gcnn_at_10k, identifiable_at_10k",
    [([0.5, 0.51, 0.52], True), ([0.88, 0.9, 0.92], False), ([0.9, 0.9, 0.9], False)],
    ids=["one identifiable", "none", "every arm tied"],
)
def test_every_figure_keeps_a_normal_size_when_arms_tie(tmp_path, gcnn_at_10k, identifiable_at_10k):
    # Chance-level models tie: plain and repeat at 90.00% with no spread. Where the G-CNN is
    # clearly better the share is exactly 0 with a zero-width Fieller interval; the forest plot
    # once autoscaled to that width, and the other budget's "not identifiable" label (at x = 50 in
    # data units) landed 1e17 axis widths away: a 1e21-pixel PNG matplotlib refused (CI). With
    # nothing identifiable the same label made a 36,000-pixel-wide PNG. With every arm tied the
    # pooled share divided by a zero total gain.
    from ablate.report.analysis import analyse

    errors = {(b, a): [0.9, 0.9, 0.9] for b in (10_000, 50_000) for a in MEANS}
    errors[10_000, "gcnn"] = gcnn_at_10k
    write_study(tmp_path / "results", seeds=range(3), errors=errors)
    report = analyse(tmp_path / "results" / "synth", n_boot=0, n_perm=0)
    shown = report.table.set_index("budget")["identifiable"].astype(bool)
    assert shown[10_000] == identifiable_at_10k and not shown[50_000]
    out = tmp_path / "figs"
    assert main(["--results", str(tmp_path / "results"), "--out", str(out), "--format", "png"]) == 0
    pngs = sorted((out / "synth").glob("*.png"))
    assert {png.stem for png in pngs} == set(FIGURES) - {"sharing_or_symmetry"}  # no wrong arm here
    for png in pngs:
        with Image.open(png) as image:
            assert image.size[0] < 2500 and image.size[1] < 1200, (png.name, image.size)
