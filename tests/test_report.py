"""`python -m ablate.report` on synthetic results directories."""


import numpy as np
import pytest
from PIL import Image

from ablate import stats
from ablate.report import FIGURES, main
from ablate.results import RUN_COLUMNS, StudyResults

MEANS = {"plain": 0.0503, "repeat": 0.0393, "gcnn": 0.0228}


def write_study(root, name="synth", budgets=(10_000, 50_000), seeds=range(5), skip=(), rng_seed=0,
                epochs=3, study_seeds=None):
    """A results folder as ablate.run writes it, with errors drawn around MEANS."""
    rng = np.random.default_rng(rng_seed)
    store = StudyResults(root, name)
    for budget in budgets:
        for arm, mean in MEANS.items():
            for seed in seeds:
                if (budget, arm, seed) in skip:
                    continue
                key = f"{name}-{budget}-{arm}-{seed}"
                error = float(rng.normal(mean, 0.002))
                run = {c: "" for c in RUN_COLUMNS}
                run.update(study=name, run_key=key, arm=arm, budget=budget, seed=seed,
                           n_params=int(budget * (1 + rng.uniform(-0.01, 0.01))),
                           macs=budget * (40 if arm == "plain" else 400), group_order=4,
                           dataset="embedded", n_train=4000, n_test=1000, epochs=epochs,
                           test_error=error, invariance_error=0.0 if arm == "gcnn" else 0.2,
                           status="ok", train_seconds=1.0)
                history = [{"study": name, "run_key": key, "arm": arm, "budget": budget, "seed": seed,
                            "epoch": e, "train_loss": 1 / e, "train_error": error * (1 + 2 / e),
                            "test_error": error * (1 + 1 / e), "lr": 1e-3, "seconds": 1.0}
                           for e in range(1, epochs + 1)]
                store.record(run, history)
    listed = list(study_seeds if study_seeds is not None else seeds)
    store.write_study(f'name = "{name}"\n[models]\nbudgets = {list(budgets)}\n'
                      f'arms = ["plain", "repeat", "gcnn"]\n[train]\nseeds = {listed}\n')
    return store


def test_report_writes_every_file_and_matches_stats(tmp_path, capsys):
    store = write_study(tmp_path / "results")
    out = tmp_path / "figs"
    assert main(["--results", str(tmp_path / "results"), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    folder = out / "synth"
    for name in FIGURES:
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
        line = next(l for l in table_md.splitlines() if l.startswith(f"| {int(row['budget']):,} | {100 * row['gain_total']:.2f}"))
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert cells[4] == f"{100 * row['share_rep']:.1f}"
        assert cells[5] == stats.format_interval(row["share_rep_lo_delta"], row["share_rep_hi_delta"])
        assert cells[2] == f"{100 * row['gain_rep']:.2f}" and cells[3] == f"{100 * row['gain_eq']:.2f}"
    summary = stats.arm_summary(store.runs()).set_index(["budget", "arm"])
    plain = summary.loc[(10_000, "plain")]
    assert f"{100 * plain['mean']:.2f} ± {100 * plain['sd']:.2f} (5)" in table_md
    sentence = stats.headline_sentence(expected, 4, "rotated MNIST, 5k embedded digits")
    assert sentence in table_md and sentence in printed and sentence.startswith("Up to ")


def test_no_results_names_the_directory(tmp_path, capsys):
    assert main(["--results", str(tmp_path / "empty")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(tmp_path / "empty") in err and "python -m ablate.run" in err


def test_missing_runs_are_named_and_the_rest_reported(tmp_path, capsys):
    write_study(tmp_path / "results", budgets=(10_000,), seeds=range(3), skip={(10_000, "gcnn", 2)},
                study_seeds=range(3))
    assert main(["--results", str(tmp_path / "results"), "--out", str(tmp_path / "figs"), "--format", "png"]) == 0
    out = capsys.readouterr().out
    assert "1 runs of the study are missing: gcnn budget 10000 seed 2" in out
    assert (tmp_path / "figs" / "synth" / "gain_decomposition.png").exists()
    assert "missing: gcnn budget 10000 seed 2" in (tmp_path / "figs" / "synth" / "table.md").read_text()


def test_single_seed_gives_point_estimates_and_says_why(tmp_path, capsys):
    write_study(tmp_path / "results", budgets=(10_000,), seeds=[0])
    assert main(["--results", str(tmp_path / "results"), "--out", str(tmp_path / "figs"), "--format", "png"]) == 0
    out = capsys.readouterr().out
    assert "need at least two ok seeds" in out
    table_md = (tmp_path / "figs" / "synth" / "table.md").read_text()
    assert "(1) |" in table_md and "Repetition share of the" not in table_md


@pytest.mark.parametrize("content, message", [
    (b"\x00\x01\x02garbage\xff\n\"unterminated", "expected a CSV written by ablate"),
    (b"name,score\nalice,3\n", "missing arm, budget, seed, test_error, status"),
])
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
