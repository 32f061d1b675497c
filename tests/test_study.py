"""Study files: malformed input gets one line with the key path, a non-zero exit, no writes."""

import subprocess
import sys
from pathlib import Path

import pytest

from ablate.run import main

ROOT = Path(__file__).resolve().parents[1]

GOOD = """name = "bad"
[data]
source = "embedded"
[models]
budgets = [5000]
[train]
seeds = [0]
[run]
results = "RESULTS"
"""

CASES = [
    ("unknown key", GOOD.replace("[train]\n", "[train]\nepochz = 3\n"), "train.epochz: unknown key"),
    ("unknown section", GOOD + "[optim]\nlr = 1\n", "optim: unknown key"),
    (
        "wrong type",
        GOOD.replace("[train]\n", '[train]\nepochs = "ten"\n'),
        "train.epochs: expected a valid integer, found 'ten'",
    ),
    (
        "negative budget",
        GOOD.replace("budgets = [5000]", "budgets = [-5]"),
        "models.budgets: expected positive integers",
    ),
    ("empty seeds", GOOD.replace("seeds = [0]", "seeds = []"), "train.seeds: expected"),
    (
        "unknown arm",
        GOOD.replace("budgets = [5000]", 'budgets = [5000]\narms = ["plain", "big"]'),
        "models.arms.1: expected 'plain', 'repeat', 'gcnn', 'augmented', 'wrong' or 'wide', found 'big'",
    ),
    (
        "unknown source",
        GOOD.replace('"embedded"', '"cifar"'),
        "data.source: expected 'mnist-rot', 'mnist', 'embedded', 'npz' or 'folder', found 'cifar'",
    ),
    ("bad TOML", GOOD.replace("[train]", "[train"), "invalid TOML"),
    (
        "missing budgets",
        GOOD.replace("budgets = [5000]\n", ""),
        "models: expected budgets or a preset, found neither",
    ),
    (
        "bad device",
        GOOD + 'device = "tpu"\n',
        "run.device: expected one of auto, cpu, cuda, cuda:N, found 'tpu'",
    ),
    (
        "zero epochs",
        GOOD.replace("[train]\n", "[train]\nepochs = 0\n"),
        "train.epochs: expected greater than 0, found 0",
    ),
    ("bad name", GOOD.replace('name = "bad"', 'name = "../up"'), "name: expected"),
    (
        "group order 1",
        GOOD.replace("budgets = [5000]", "budgets = [5000]\ngroup_order = 1"),
        "models.group_order",
    ),
    (
        "infeasible budget",
        GOOD.replace("budgets = [5000]", "budgets = [50]"),
        "models.budgets: plain: budget 50",
    ),
    ("duplicate seeds", GOOD.replace("seeds = [0]", "seeds = [1, 1]"), "train.seeds: expected distinct"),
    (
        "budgets and preset",
        GOOD.replace("budgets = [5000]", 'budgets = [5000]\npreset = "repeatnet-paper"'),
        "models: expected budgets or a preset, found both",
    ),
    (
        "preset with augmented arm",
        GOOD.replace("budgets = [5000]", 'preset = "repeatnet-paper"\narms = ["plain", "augmented"]'),
        "models: expected arms within the repeatnet-paper preset (arms plain, repeat, gcnn;",
    ),
    (
        "budget seeds of another budget",
        GOOD.replace("seeds = [0]", "seeds = [0]\nbudget_seeds = { 7000 = [0, 1] }"),
        "train.budget_seeds: expected budgets of models.budgets [5000], found ['7000']",
    ),
]


@pytest.mark.parametrize("label, text, message", CASES, ids=[c[0] for c in CASES])
def test_malformed_study_gives_one_line_and_touches_nothing(tmp_path, capsys, label, text, message):
    results = tmp_path / "results"
    path = tmp_path / "study.toml"
    path.write_text(text.replace("RESULTS", str(results)))
    assert main([str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert str(path) in err and message in err, err
    assert not results.exists()


def test_missing_file_and_bad_override(tmp_path, capsys):
    assert main([str(tmp_path / "nope.toml")]) == 2
    assert "nope.toml: cannot read the study file" in capsys.readouterr().err
    path = tmp_path / "study.toml"
    path.write_text(GOOD.replace("RESULTS", str(tmp_path / "results")))
    assert main([str(path), "--seeds", "0,x"]) == 2
    assert "--seeds: expected comma-separated integers, found '0,x'" in capsys.readouterr().err
    assert main([str(path), "--arms", "plain,huge", "--dry-run"]) == 2
    assert "(command line): models.arms.1" in capsys.readouterr().err


def test_exit_code_from_a_real_process(tmp_path):
    path = tmp_path / "study.toml"
    path.write_text(GOOD.replace("budgets = [5000]", "budgets = [0]").replace("RESULTS", str(tmp_path / "r")))
    proc = subprocess.run(
        [sys.executable, "-m", "ablate.run", str(path)], capture_output=True, text=True, cwd=ROOT
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().startswith("error: ") and len(proc.stderr.strip().splitlines()) == 1


def test_budget_seeds_give_a_budget_its_own_seeds_under_the_same_run_keys(tmp_path, capsys):
    from ablate.study.grid import expand_grid
    from ablate.study.schema import parse_study

    base = {
        "name": "s",
        "data": {"source": "embedded"},
        "models": {"budgets": [5000, 20000], "arms": ["plain"]},
    }
    plain = parse_study({**base, "train": {"seeds": [0, 1, 2]}})
    spent = parse_study({**base, "train": {"seeds": [0], "budget_seeds": {"5000": [0, 1, 2]}}})
    grid = {(s.budget, s.seed): s.run_key for s in expand_grid(spent)}
    assert sorted(grid) == [(5000, 0), (5000, 1), (5000, 2), (20000, 0)]
    same = {(s.budget, s.seed): s.run_key for s in expand_grid(plain)}
    assert all(same[cell] == key for cell, key in grid.items())  # budget_seeds is not in the key
    assert spent.train.all_seeds == [0, 1, 2]
    path = tmp_path / "study.toml"
    path.write_text(
        GOOD.replace("[5000]", "[5000, 20000]")
        .replace("seeds = [0]", "seeds = [0]\nbudget_seeds = {5000 = [0, 1]}")
        .replace("RESULTS", str(tmp_path))
    )
    assert main([str(path), "--dry-run", "--budgets", "20000"]) == 0  # the 5000 list is dropped
    assert main([str(path), "--dry-run", "--seeds", "3"]) == 0
    out = capsys.readouterr().out
    assert "3 runs in 3 cells (1 budgets" in out and "6 runs in 6 cells (2 budgets" in out


def test_the_configuration_layer_loads_neither_torch_nor_escnn():
    """Study files, ladder files and the vocabulary (group, design) load in a fresh interpreter
    without torch or escnn; a study file is validated without reading its data."""
    code = (
        "import sys\n"
        "from ablate.study.schema import load_study\n"
        "from ablate.study.ladder import load_ladder\n"
        "from ablate.models.arms import Design, Group\n"
        "load_study('studies/example_npz.toml'); load_ladder('studies/bridge.toml')\n"
        "assert Design(20000, Group('D', 4)).label == 'budget 20,000, D4'\n"
        "print(sorted(m for m in ('torch', 'escnn', 'torchvision') if m in sys.modules))\n"
    )
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
