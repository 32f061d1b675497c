"""The house rules: the import layers (import-linter), small modules, the top level's contents,
committed run keys that recompute unchanged, and committed reports that the code rebuilds."""

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from ablate.report.analysis import analyse
from ablate.report.tables import write_tables
from ablate.report.write import write_ladder
from ablate.results import StudyResults
from ablate.study.grid import expand_grid
from ablate.study.ladder import load_ladder
from ablate.study.schema import with_overrides

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "ablate"
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"
COMMITTED = sorted(p.parent.name for p in (ROOT / "results").glob("*/runs.csv"))  # a report each
BRIDGE = sorted(f"bridge/{p.parent.name}" for p in (ROOT / "results" / "bridge").glob("*/runs.csv"))


def _lint_imports(tree: Path) -> subprocess.CompletedProcess:
    """lint-imports on the package in `tree` (its pyproject.toml's contract)."""
    env = {"PYTHONPATH": str(tree), "PATH": str(Path(sys.executable).parent), "HOME": str(tree)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"], cwd=tree, env=env, capture_output=True, text=True, timeout=300
    )


def test_an_upward_import_breaks_the_layers_contract(tmp_path):
    shutil.copytree(PACKAGE, tmp_path / "ablate", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    kept = _lint_imports(tmp_path)
    assert kept.returncode == 0 and "2 kept, 0 broken" in kept.stdout, kept.stdout[-2000:]
    augment = tmp_path / "ablate" / "data" / "augment.py"  # data sits below the report
    augment.write_text(
        augment.read_text() + "\n\ndef _upward():\n    from ablate.report import text  # noqa\n"
    )
    broken = _lint_imports(tmp_path)
    assert broken.returncode != 0 and "ablate.data.augment -> ablate.report" in broken.stdout


def test_an_import_circle_inside_a_subpackage_breaks_the_cycle_contract(tmp_path):
    """The circle issue 40 found (models.spec importing the builder, which imports spec) fails lint."""
    shutil.copytree(PACKAGE, tmp_path / "ablate", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    spec = tmp_path / "ablate" / "models" / "spec.py"
    spec.write_text(spec.read_text() + "\n\ndef _circle():\n    from ablate.models import builder  # noqa\n")
    broken = _lint_imports(tmp_path)
    assert (
        broken.returncode != 0 and "no import cycle among the modules of a subpackage BROKEN" in broken.stdout
    )


def test_the_python_interface_imports_no_command_line_module():
    code = (
        "import sys, ablate.api\n"
        "print(sorted(m for m in sys.modules if m in ('ablate.run', 'ablate.bench') or m.endswith('__main__')"
        " and m.startswith('ablate')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stdout + out.stderr


def test_no_module_is_over_400_lines_and_the_top_level_holds_only_the_allowed():
    sizes = {p.relative_to(ROOT): len(p.read_text().splitlines()) for p in PACKAGE.rglob("*.py")}
    assert {p: n for p, n in sizes.items() if n > 400} == {}
    top = {p.name for p in PACKAGE.iterdir() if p.name != "__pycache__"}
    assert top == {
        "__init__.py", "_compat.py", "errors.py", "results", "run.py", "bench.py", "api.py",
        "study", "data", "models", "training", "stats", "report",
    }  # fmt: skip


def test_no_function_of_the_package_is_over_60_lines():
    """Every function reads on one screen."""
    files = list(PACKAGE.rglob("*.py"))
    long = {}
    for path in files:
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
                and node.end_lineno - node.lineno >= 60
            ):
                long[f"{path.relative_to(PACKAGE)}:{node.name}"] = node.end_lineno - node.lineno + 1
    assert long == {}


@pytest.mark.parametrize("name", COMMITTED + BRIDGE)
def test_committed_run_keys_recompute_unchanged(name):
    store = StudyResults(ROOT / "results" / Path(name).parent, Path(name).name)
    runs, study = store.runs(), store.saved_study()
    # the seeds that ran (a study file may list fewer than its cells hold): each budget's own list
    seeds = {str(b): sorted(int(s) for s in group["seed"].unique()) for b, group in runs.groupby("budget")}
    everyone = sorted(int(s) for s in runs["seed"].unique())
    per_budget = {"budget_seeds": seeds} if study.models.budgets else {}  # a preset has no budgets
    ran = with_overrides(study, "test", train={"seeds": everyone, **per_budget})
    recomputed = {(s.arm, s.budget, s.seed, s.model.group.order, s.run_key) for s in expand_grid(ran)}
    committed = set(
        runs[["arm", "budget", "seed", "group_order", "run_key"]].itertuples(index=False, name=None)
    )
    assert committed <= recomputed  # every committed run's key is what the code computes now
    assert {s.run_key for s in expand_grid(study)} <= set(runs["run_key"])  # and the study file's grid ran


@pytest.mark.parametrize("name", COMMITTED)
def test_committed_tables_are_what_the_report_writes(name, tmp_path):
    report = analyse(ROOT / "results" / name)
    write_tables(report, tmp_path)
    for table in ("table.md", "table.tex"):
        assert (tmp_path / table).read_text() == (ROOT / "paper_figs" / name / table).read_text(), table


def test_committed_bridge_report_is_what_the_report_writes(tmp_path):
    assert BRIDGE == ["bridge/bridge-b", "bridge/bridge-c", "bridge/bridge-d"]
    write_ladder(load_ladder(ROOT / "studies" / "bridge.toml"), ROOT, tmp_path, formats=())
    committed = ROOT / "paper_figs" / "bridge" / "table.md"
    assert (tmp_path / "bridge" / "table.md").read_text() == committed.read_text()


def test_committed_runs_read_with_one_spelling_of_not_applicable():
    for name in COMMITTED + BRIDGE:
        runs = StudyResults(ROOT / "results" / Path(name).parent, Path(name).name).runs()
        plain = runs[runs["arm"].isin(["plain", "augmented"])]
        assert (plain["group_order"] == 1).all() and (plain["repeat_structure"] == "").all(), name
        repeat = runs[runs["arm"] == "repeat"]
        assert repeat["repeat_structure"].isin(["paper", "matched"]).all(), name
        assert not pd.isna(runs["model_name"]).any(), name
