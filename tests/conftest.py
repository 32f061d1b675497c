"""Shared fixtures: tiny study files on the embedded data."""

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]

TINY = """
name = "{name}"
[data]
source = "embedded"
limit_train = 160
limit_test = 64
[models]
budgets = {budgets}
arms = {arms}
[train]
seeds = {seeds}
epochs = {epochs}
batch_size = 32
lr = {lr}
[run]
device = "cpu"
results = "{results}"
threads = 1
"""


@pytest.fixture
def tiny_study(tmp_path: Path):
    """Write a tiny study file; returns a function of overrides -> its path."""

    def write(
        name="tiny",
        arms='["plain", "repeat", "gcnn"]',
        seeds="[0, 1]",
        epochs=2,
        lr=1e-3,
        results=None,
        budgets="[5000]",
    ) -> Path:
        path = tmp_path / f"{name}.toml"
        results = results or str(tmp_path / "results")
        path.write_text(
            textwrap.dedent(
                TINY.format(
                    name=name, arms=arms, seeds=seeds, epochs=epochs, lr=lr, results=results, budgets=budgets
                )
            )
        )
        return path

    return write


@pytest.fixture
def driver_with_a_finished_run():
    """Start `python -m ablate.run STUDY ARGS...` in a subprocess and return it once the study's
    runs.csv (`runs_path`) holds a row, still running (asserted)."""

    def start(study: Path, runs_path: Path, *args: str, timeout: float = 300) -> subprocess.Popen:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        command = [sys.executable, "-m", "ablate.run", str(study), *args]
        driver = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        deadline = time.time() + timeout
        while time.time() < deadline and driver.poll() is None:
            if runs_path.exists() and len(pd.read_csv(runs_path)) >= 1:
                break
            time.sleep(0.05)
        assert driver.poll() is None, "the study finished before it could be interrupted"
        return driver

    return start
