"""`--jobs N`: several runs at a time in worker processes, behind the one driver loop. Same
results as one at a time (same threads per run), resumable after kill -9 with no orphan worker,
and a default chosen from the machine."""

import os
import signal
import subprocess
import time
from pathlib import Path

import pandas as pd

from ablate.results import StudyResults
from ablate.run import main
from ablate.study.schema import load_study, with_overrides
from ablate.training.pool import default_jobs

ROOT = Path(__file__).resolve().parents[1]
TWO_BUDGETS = "[5000, 10000]"


def test_two_jobs_give_the_runs_of_one_job(tiny_study, tmp_path, capsys):
    one = tiny_study("same", epochs=1, budgets=TWO_BUDGETS, results=tmp_path / "one")
    assert main([str(one), "--jobs", "1"]) == 0
    two = tiny_study("same", epochs=1, budgets=TWO_BUDGETS, results=tmp_path / "two")  # the same file name
    assert main([str(two), "--jobs", "2"]) == 0
    assert "2 runs at a time with 1 thread each" in capsys.readouterr().out
    a = StudyResults(tmp_path / "one", "same").runs().sort_values("run_key").reset_index(drop=True)
    b = StudyResults(tmp_path / "two", "same").runs().sort_values("run_key").reset_index(drop=True)
    assert len(a) == 12 and a["run_key"].tolist() == b["run_key"].tolist()
    assert a["test_error"].tolist() == b["test_error"].tolist()  # same threads per run: bit for bit
    assert a["train_loss"].tolist() == b["train_loss"].tolist()
    history = StudyResults(tmp_path / "two", "same").history()
    assert len(history) == 12 and not history.duplicated(["run_key", "epoch"]).any()
    assert not list((tmp_path / "two" / "same" / "checkpoints").glob("*.pt"))


def _children(pid: int) -> list[int]:
    done = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True)
    return [int(p) for p in done.stdout.split()]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:  # a zombie is gone for our purpose
        return stat.read().split(")")[-1].split()[0] != "Z"


def test_kill_9_mid_study_leaves_no_worker_and_a_rerun_finishes_without_duplicates(
    tiny_study, tmp_path, driver_with_a_finished_run
):
    path = tiny_study("killed", epochs=3, budgets=TWO_BUDGETS)
    store = StudyResults(tmp_path / "results", "killed")
    driver = driver_with_a_finished_run(path, store.runs_path, "--jobs", "2")
    workers = _children(driver.pid)
    assert workers, "expected worker processes"
    driver.send_signal(signal.SIGKILL)
    driver.wait(timeout=60)
    deadline = time.time() + 20
    while time.time() < deadline and any(_alive(pid) for pid in workers):
        time.sleep(0.1)
    assert not any(_alive(pid) for pid in workers), "a worker outlived its driver"
    done = len(pd.read_csv(store.runs_path))
    assert 1 <= done < 12
    assert main([str(path), "--jobs", "2"]) == 0
    runs, history = pd.read_csv(store.runs_path), pd.read_csv(store.history_path)
    assert len(runs) == 12 and runs["run_key"].is_unique
    assert len(history) == 36 and not history.duplicated(["run_key", "epoch"]).any()


def test_the_default_comes_from_the_machine_and_a_fixed_thread_count_keeps_one_job(tiny_study):
    study = load_study(tiny_study("default"))  # the tiny study fixes threads = 1
    assert default_jobs(study, cores=16) == 1
    free = with_overrides(study, "test", run={"threads": None})
    free = free.model_copy(update={"run": free.run.model_copy(update={"threads": None})})
    assert (
        default_jobs(free, cores=2) == 2
        and default_jobs(free, cores=16) == 4
        and default_jobs(free, cores=1) == 1
    )


def test_jobs_flags_are_checked(tiny_study, capsys):
    path = tiny_study("flags", arms='["plain"]', epochs=1)
    assert main([str(path), "--jobs", "0"]) == 2
    assert "--jobs: expected a whole number >= 1, found 0" in capsys.readouterr().err
    assert main([str(path), "--jobs", "2", "--executor", "ray"]) == 2
    assert "--jobs: only with --executor local" in capsys.readouterr().err
