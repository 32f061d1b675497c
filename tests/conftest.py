"""Shared fixtures: tiny study files on the embedded data."""

import textwrap
from pathlib import Path

import pytest

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
