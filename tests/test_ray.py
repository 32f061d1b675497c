"""--executor ray on a local Ray instance (2 CPUs, tiny data): same runs as the local executor,
retries, failures reported, a killed driver resumed; the default path never imports Ray."""

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest

ray = pytest.importorskip(
    "ray", reason="the Ray executor needs the extra ablate[ray] (make setup installs it)"
)

from ablate.results import StudyResults  # noqa: E402
from ablate.run import main  # noqa: E402
from ablate.study.grid import expand_grid  # noqa: E402
from ablate.study.schema import load_study  # noqa: E402
from ablate.training.driver import RunsUnfinished, run_study  # noqa: E402
from ablate.training.ray import Fault, RayExecutor, node_checkpoints  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray instance for the module: 2 CPUs, workers at normal priority."""
    os.environ.setdefault("RAY_worker_niceness", "0")
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


TWO_BUDGETS = "[5000, 10000]"


def test_ray_gives_the_same_runs_as_the_local_executor(local_ray, tmp_path, tiny_study):
    local = load_study(tiny_study("same", epochs=1, budgets=TWO_BUDGETS, results=tmp_path / "local"))
    distributed = load_study(tiny_study("same", epochs=1, budgets=TWO_BUDGETS, results=tmp_path / "ray"))
    run_study(local)
    run_study(distributed, executor=RayExecutor(cpus_per_task=1))
    a = pd.read_csv(StudyResults(local.run.results, "same").runs_path)
    b = pd.read_csv(StudyResults(distributed.run.results, "same").runs_path)
    assert len(a) == 12 and sorted(a["run_key"]) == sorted(b["run_key"])
    merged = a.merge(b, on="run_key", suffixes=("_local", "_ray"))
    # same thread count (1), same code: equal up to float noise, at most one of 64 test digits apart
    assert (merged["test_error_local"] - merged["test_error_ray"]).abs().max() <= 1 / 64 + 1e-9
    assert (merged["train_loss_local"] - merged["train_loss_ray"]).abs().max() < 1e-3
    history = pd.read_csv(StudyResults(distributed.run.results, "same").history_path)
    assert len(history) == 12 and not history.duplicated(["run_key", "epoch"]).any()
    assert not list((Path(distributed.run.results) / "same" / "checkpoints").glob("*"))  # token removed


@pytest.mark.parametrize("kind", ["raise", "exit"])
def test_a_task_failing_once_is_retried_and_the_study_finishes(local_ray, tmp_path, tiny_study, kind):
    study = load_study(tiny_study(f"retry-{kind}", arms='["plain"]', epochs=1))
    store = StudyResults(study.run.results, study.name)
    key = expand_grid(study)[1].run_key
    fault = Fault(run_key=key, folder=str(tmp_path), times=1, kind=kind)
    run_study(study, executor=RayExecutor(cpus_per_task=1, max_retries=2, fault=fault))
    assert (tmp_path / f"{key}.attempts").read_text() == "xx"  # failed once, then finished
    runs = pd.read_csv(store.runs_path)
    assert len(runs) == 2 and runs["run_key"].is_unique and (runs["status"] == "ok").all()


def test_a_task_that_always_fails_is_reported_and_the_rest_finish(local_ray, tmp_path, tiny_study, capsys):
    study = load_study(tiny_study("doomed", arms='["plain", "repeat"]', epochs=1))
    doomed = expand_grid(study)[0]
    fault = Fault(run_key=doomed.run_key, folder=str(tmp_path), times=None)
    with pytest.raises(RunsUnfinished, match="^study doomed: 1 runs did not finish"):
        run_study(study, executor=RayExecutor(cpus_per_task=1, max_retries=1, fault=fault))
    out = capsys.readouterr().out
    assert (
        f"failed: plain budget 5000 seed {doomed.seed} (run {doomed.run_key}): "
        f"RuntimeError: injected failure of run {doomed.run_key}"
    ) in out
    assert (tmp_path / f"{doomed.run_key}.attempts").read_text() == "xx"  # first try + 1 retry
    runs = pd.read_csv(StudyResults(study.run.results, "doomed").runs_path)
    assert len(runs) == 3 and doomed.run_key not in set(runs["run_key"])


def test_driver_killed_mid_study_and_rerun_finishes_without_duplicates(
    local_ray, tmp_path, tiny_study, driver_with_a_finished_run
):
    path = tiny_study("killed", epochs=2, budgets=TWO_BUDGETS)
    store = StudyResults(tmp_path / "results", "killed")
    driver = driver_with_a_finished_run(path, store.runs_path, "--executor", "ray", "--cpus-per-task", "1")
    driver.send_signal(signal.SIGKILL)
    driver.wait(timeout=60)
    done = len(pd.read_csv(store.runs_path))
    assert 1 <= done < 12
    assert main([str(path), "--executor", "ray", "--cpus-per-task", "1"]) == 0
    runs, history = pd.read_csv(store.runs_path), pd.read_csv(store.history_path)
    assert len(runs) == 12 and runs["run_key"].is_unique
    assert len(history) == 24 and not history.duplicated(["run_key", "epoch"]).any()


def test_the_default_path_never_imports_ray(tiny_study):
    path = tiny_study("noray", arms='["plain"]', epochs=1)
    script = textwrap.dedent(
        f"""
        import sys
        sys.modules["ray"] = None  # as if Ray were not installed: `import ray` raises ImportError
        from ablate.run import main
        assert main([{str(path)!r}]) == 0
        assert main([{str(path)!r}, "--executor", "local", "--dry-run"]) == 0
        assert sys.modules["ray"] is None
        """
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]


def test_ray_flags_need_the_ray_executor(tiny_study, capsys):
    path = tiny_study("flags", arms='["plain"]', epochs=1)
    assert main([str(path), "--gpus-per-task", "0.5"]) == 2
    assert "--gpus-per-task: only with --executor ray, found --executor local" in capsys.readouterr().err


def test_workers_checkpoint_in_the_study_only_when_they_see_the_drivers_token(tmp_path):
    store = StudyResults(tmp_path / "results", "s")
    (checkpoint,), shared = node_checkpoints(store, ".driver-abc", ["k"])
    assert not shared and checkpoint.path.parent.parent.name == "ablate-checkpoints"
    assert store.put_driver_token(".driver-abc") == ".driver-abc"  # shared storage: the worker sees it
    (checkpoint,), shared = node_checkpoints(store, ".driver-abc", ["k"])
    assert shared and checkpoint.path == store.dir / "checkpoints" / "k.pt"
    store.remove_driver_token(".driver-abc")
    assert not store.sees_driver_token(".driver-abc")
