"""Ladders of studies: the bridge ladder (studies/bridge.toml) on synthetic step folders with known
shares (each step's share, D's "up to" over N, step E's one-seed distribution, the report's table,
sentence and figure), a user's own two-step ladder of committed studies, and bad ladder files."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ablate.errors import StudyError
from ablate.report.__main__ import main as report_main
from ablate.report.ladder import analyse_ladder, ladder_rows, ladder_sentence
from ablate.results import RUN_COLUMNS, HistoryRow, RunRow, StudyResults
from ablate.study.ladder import load_ladder

ROOT = Path(__file__).resolve().parents[1]
BRIDGE = ROOT / "studies" / "bridge.toml"


def _write(root: Path, folder: str, cells: list[dict], seeds: range, rng, sd=0.002) -> None:
    """Runs of `cells` (arm, group_order, repeat_structure, model_name, error) for `seeds`, with
    a two-epoch history whose best epoch is the first (its error 1 point lower for repeat arms)."""
    store = StudyResults(root / Path(folder).parent, Path(folder).name)
    for cell in cells:
        for seed in seeds:
            error = cell["error"] + sd * rng.standard_normal()
            key = f"{folder}-{cell['arm']}-{cell['group_order']}-{cell['repeat_structure']}-{seed}"
            values = {c: 0 for c in RUN_COLUMNS} | {
                "study": Path(folder).name, "run_key": key, "arm": cell["arm"], "budget": 20_000,
                "seed": seed, "n_params": 20_000, "group_order": cell["group_order"], "test_error": error,
                "status": "ok", "repeat_structure": cell["repeat_structure"],
                "model_name": cell.get("model_name", ""),
                "repeat_mode": "", "backbone": "repeatnet", "learnable_widths": "1", "physical_widths": "1",
                "dataset": "embedded", "device": "cpu", "finished_at": "2026-11-30T12:00:00+00:00",
                "ablate_version": "0.2.0", "torch_version": "", "escnn_version": "", "epochs": 2,
                "n_test": 3000, "group": "C",
            }  # fmt: skip
            ident = {k: values[k] for k in ("study", "run_key", "arm", "budget", "seed")}
            best = error - (0.01 if cell["arm"] == "repeat" else 0.0)
            history = [
                HistoryRow(
                    **ident, epoch=1, train_loss=1.0, train_error=0.1, test_error=best, lr=1e-3, seconds=1.0
                ),
                HistoryRow(
                    **ident, epoch=2, train_loss=1.0, train_error=0.1, test_error=error, lr=1e-3, seconds=1.0
                ),
            ]
            store.record(RunRow(**values), history)


def triplet(share: float, structure="paper", order=4, names=("", "", "")) -> list[dict]:
    """plain 20%, G-CNN 10%, repeat at the given share of the 10-point gain."""
    base, rep, g = names
    return [
        {"arm": "plain", "group_order": 1, "repeat_structure": "", "model_name": base, "error": 0.20},
        {"arm": "repeat", "group_order": order, "repeat_structure": structure, "model_name": rep,
         "error": 0.20 - share * 0.10},
        {"arm": "gcnn", "group_order": order, "repeat_structure": "", "model_name": g, "error": 0.10},
    ]  # fmt: skip


@pytest.fixture
def bridge_root(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "results"
    _write(root, "answer", triplet(0.0) + triplet(0.02, "matched")[1:], range(6), rng)
    _write(root, "bridge/bridge-b", triplet(0.10) + triplet(0.12, "matched")[1:], range(6), rng)
    _write(root, "bridge/bridge-c", triplet(0.20, names=("baseline", "c4_rep", "c4")), range(6), rng)
    c8 = triplet(0.30, order=8, names=("", "c8_rep", "c8"))[1:]
    c16 = triplet(0.25, order=16, names=("", "c16_rep", "c16"))[1:]
    _write(root, "bridge/bridge-d", c8 + c16, range(4), rng)
    return root


def test_the_bridge_gives_each_steps_share_and_the_one_seed_distribution(bridge_root):
    r = analyse_ladder(load_ladder(BRIDGE), bridge_root.parent)
    assert r.missing == []
    shares = {(t.step, t.group_order, t.repeat_structure): t.share_rep for t in r.rows.itertuples()}
    assert shares[("A", 4, "paper")] == pytest.approx(0.0, abs=0.03)
    assert shares[("A", 4, "matched")] == pytest.approx(0.02, abs=0.03)
    assert shares[("B", 4, "paper")] == pytest.approx(0.10, abs=0.03)
    assert shares[("C", 4, "paper")] == pytest.approx(0.20, abs=0.03)
    d = r.rows[r.rows["step"] == "D"]
    assert sorted(d["group_order"]) == [4, 8, 16]
    assert d.loc[d["up_to"], "group_order"].tolist() == [8]  # the largest share over N
    assert any("biased upward" in n for n in r.notes)
    best, final = r.single["E"]["best"], r.single["E"]["final"]
    assert len(best.per_seed) == 4  # seeds 0-3 have every model of C and D
    # best epoch: the repeat arms' errors 1 point lower, so each seed's share rises by 0.1
    assert best.summary.iloc[0]["median"] == pytest.approx(final.summary.iloc[0]["median"] + 0.1, abs=0.02)
    assert final.summary.iloc[0]["median"] == pytest.approx(0.30, abs=0.03)
    # the repeat arms' error rises 1 point over the last epoch: the share falls 10 points, a drift
    c4 = r.rows[(r.rows["step"] == "C")].iloc[0]
    assert c4["verdict"] == "drift" and c4["stable_change"] == pytest.approx(-0.10, abs=0.01)
    assert c4["stable_lo"] < c4["stable_change"] < c4["stable_hi"] < 0
    assert any(n.startswith("step C (C4): share not shown stable (drift: -10.0 points") for n in r.notes)
    assert any(n.startswith("step C: single runs fluctuate by") for n in r.notes)  # noise, not a verdict
    d16 = r.rows[(r.rows["step"] == "D") & r.rows["up_to"]].iloc[0]
    assert d16["up_to_k"] == 3 and d16["up_to_lo"] < d16["share_rep_lo_delta"] < d16["share_rep"]
    resting = ladder_sentence(r).split("Not shown stable over the last epochs (table): ")[1]
    assert "C (C4): drift" in resting  # every step's repeat arms moved by 1 point at the last epoch
    assert any(n == "step A (C4, paper control): 6 of the 24 planned seeds per arm" for n in r.notes)
    # the two-stage plan from seeds 0-9: steps A-C have 6 seeds, enough; D's 4 are too few a pilot
    assert (r.rows.loc[r.rows["step"] != "D", "pilot"] >= 2).all()
    assert (r.rows.loc[r.rows["step"] == "D", "pilot"] == -1).all()
    sentence = ladder_sentence(r)
    assert sentence.startswith("Repetition share of the G-CNN's gain, step by step")
    assert all(f"{key} " in sentence for key in "ABCD") and "E, the paper's estimator" in sentence


def test_the_bridge_report_writes_its_table_and_figure_and_says_what_is_missing(
    bridge_root, tmp_path, capsys, monkeypatch
):
    out = tmp_path / "figs"
    monkeypatch.chdir(bridge_root.parent)  # the steps' results folders are where ablate.run wrote them
    assert report_main([str(BRIDGE), "--out", str(out)]) == 0
    table = (out / "bridge" / "table.md").read_text()
    for step in (
        "A (C4, paper control)",
        "A (C4, matched control)",
        "B (C4, paper control)",
        "C (C4)",
        "D (C8)",
    ):
        assert f"| {step} |" in table, step
    assert "| E (best epoch) |" in table and "| E (final epoch) |" in table
    assert "| drift: -10.0 points (" in table and "| 6 (plan: " in table
    assert (out / "bridge" / "bridge_trajectory.png").exists()
    assert "(up to: largest of 3, adjusted 95% CI " in table
    assert "baseline 20,000 · c4_rep 20,000 · c4 20,000" in table
    assert (out / "bridge" / "bridge.png").exists()
    assert "== bridge" in capsys.readouterr().out
    for folder in ("bridge-c", "bridge-d"):
        for name in ("runs.csv", "history.csv"):
            (bridge_root / "bridge" / folder / name).unlink()
    b = bridge_root / "bridge" / "bridge-b" / "runs.csv"  # step B still training: no repeat seed yet
    runs = pd.read_csv(b, keep_default_na=False)
    runs[runs["arm"] != "repeat"].to_csv(b, index=False)
    r = analyse_ladder(load_ladder(BRIDGE), bridge_root.parent)
    assert r.missing == ["B", "C", "D", "E"] and "Not finished yet: steps B, C, D, E." in ladder_sentence(r)
    assert any(n.startswith("step B: not shown") and "arm repeat" in n for n in r.notes), r.notes
    assert set(r.rows["step"]) == {"A"}
    assert not pd.isna(r.rows["share_rep"]).any()


def test_a_users_own_ladder_of_two_committed_studies_builds(tmp_path, monkeypatch):
    ladder = tmp_path / "mine.toml"
    ladder.write_text(
        f"""[ladder]
name = "mine"
title = "from the quick study to the answer"

[[steps]]
key = "quick"
change = "the quick study: 5k and 20k budgets, 3 seeds"
studies = ["{ROOT / "studies" / "quick.toml"}"]
budget = 20000

[[steps]]
key = "answer"
change = "+ more seeds and both controls"
studies = ["{ROOT / "studies" / "answer.toml"}"]
budget = 20000
controls = ["matched"]
seeds = 24
"""
    )
    r = analyse_ladder(load_ladder(ladder), ROOT)
    assert r.missing == [] and list(r.rows["step"].unique()) == ["quick", "answer"]
    answer = r.rows[r.rows["step"] == "answer"]
    assert answer["repeat_structure"].tolist() == ["matched"] and (answer["budget"] == 20000).all()
    rows = ladder_rows(r)
    assert [row[0] for row in rows] == ["quick (C4)", "answer (C4)"]
    out = tmp_path / "figs"
    monkeypatch.chdir(ROOT)  # the committed studies' results folders, as ablate.run wrote them
    assert report_main([str(ladder), "--out", str(out), "--format", "png"]) == 0
    assert (out / "mine" / "mine.png").exists() and "| quick (C4) |" in (
        out / "mine" / "table.md"
    ).read_text()
    sentence = ladder_sentence(r)
    assert sentence.startswith("Repetition share") and "quick " in sentence and "answer " in sentence


@pytest.mark.parametrize(
    "body, message",
    [
        ('[ladder]\nname = "x"\ntitle = "t"\n', "steps: missing required key"),
        (
            '[ladder]\nname = "x"\ntitle = "t"\n[[steps]]\nkey = "A"\nchange = "c"\n',
            "expected studies = [FILE, ...]",
        ),
        (
            '[ladder]\nname = "x"\ntitle = "t"\n[[steps]]\nkey = "E"\nchange = "c"\n'
            'estimator = "single_seed"\nof = "D"\n',
            "expected an earlier step",
        ),
        (
            '[ladder]\nname = "x"\ntitle = "t"\n[[steps]]\nkey = "A"\nchange = "c"\n'
            'studies = ["nowhere.toml"]\n',
            "steps.A.studies: ",
        ),
    ],
)
def test_a_bad_ladder_file_is_one_line_naming_the_file_and_key(tmp_path, body, message):
    path = tmp_path / "bad.toml"
    path.write_text(body)
    with pytest.raises(StudyError) as error:
        load_ladder(path)
    assert str(error.value).startswith(f"{path}: ") and message in str(error.value), str(error.value)
    assert "\n" not in str(error.value)
