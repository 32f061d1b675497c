"""Results are tied to the data they were made on; limits keep every class; checkpoints run no code."""

import os
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import ablate.data.mnist_rot as mnist_rot
from ablate.data.sources import load_dataset
from ablate.errors import DataError
from ablate.report.__main__ import main as report_main
from ablate.results import StudyResults
from ablate.run import main
from ablate.study.grid import expand_grid
from ablate.study.schema import load_study


def write_amat(path: Path, labels: np.ndarray, seed: int) -> None:
    """An .amat file of random pixels with these labels, one row per label."""
    x = np.random.default_rng(seed).uniform(0, 1, size=(len(labels), 784)).round(4)
    path.write_text(
        "\n".join(" ".join(f"{v:.4f}" for v in row) + f" {label}" for row, label in zip(x, labels))
    )


def write_mnist_rot(root: Path, seed: int, n_train: int = 60, n_test: int = 30) -> None:
    """A small random MNIST-rot pair (both extracted files) in `root`."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    write_amat(root / mnist_rot.MNIST_ROT_TRAIN, rng.permutation(np.arange(n_train) % 10), seed)
    write_amat(root / mnist_rot.MNIST_ROT_TEST, rng.permutation(np.arange(n_test) % 10), seed + 1)


def test_cache_is_rebuilt_when_a_source_file_changes_in_place(tmp_path, capsys):
    write_mnist_rot(tmp_path, seed=0)
    first = load_dataset("mnist-rot", root=tmp_path)
    assert (tmp_path / mnist_rot.MNIST_ROT_CACHE).exists()
    capsys.readouterr()
    assert torch.equal(load_dataset("mnist-rot", root=tmp_path).x_test, first.x_test)
    assert "rebuilding" not in capsys.readouterr().out  # an unchanged source reuses the cache
    # other digits, fewer rows, inverted: the next load must see them
    test_file = tmp_path / mnist_rot.MNIST_ROT_TEST
    other = mnist_rot.parse_amat(test_file)[0][:20]
    test_file.write_text("\n".join(" ".join(f"{1 - v:.4f}" for v in row) + " 3" for row in other))
    second = load_dataset("mnist-rot", root=tmp_path)
    out = capsys.readouterr().out
    assert f"cache {tmp_path / mnist_rot.MNIST_ROT_CACHE} is out of date" in out and "rebuilding it" in out
    assert len(out.strip().splitlines()) == 1 and mnist_rot.MNIST_ROT_TEST in out
    assert second.x_test.shape[0] == 20 and (second.y_test == 3).all()
    np.testing.assert_allclose(second.x_test.view(20, -1).numpy(), 1 - other, atol=1e-4)
    assert second.meta["checksum"] != first.meta["checksum"]
    assert second.meta["fingerprint"] != first.meta["fingerprint"]


def test_same_size_edit_with_a_new_mtime_is_caught_by_the_checksum(tmp_path, capsys):
    write_mnist_rot(tmp_path, seed=1)
    first = load_dataset("mnist-rot", root=tmp_path)
    train_file = tmp_path / mnist_rot.MNIST_ROT_TRAIN
    text = train_file.read_text()
    train_file.write_text(text)  # rewritten with the same bytes
    later = train_file.stat().st_mtime + 10
    os.utime(train_file, (later, later))
    capsys.readouterr()
    assert torch.equal(load_dataset("mnist-rot", root=tmp_path).x_train, first.x_train)
    assert "rebuilding" not in capsys.readouterr().out  # same content, only touched
    swapped = text.split("\n")
    swapped[0], swapped[1] = swapped[1], swapped[0]
    train_file.write_text("\n".join(swapped))
    os.utime(train_file, (later + 10, later + 10))
    second = load_dataset("mnist-rot", root=tmp_path)
    assert "out of date" in capsys.readouterr().out
    assert torch.equal(second.x_train[0], first.x_train[1])


STUDY = """
name = "swap"
[data]
source = "mnist-rot"
root = "{root}"
[models]
budgets = [5000]
arms = ["plain"]
[train]
seeds = [0]
epochs = 1
batch_size = 16
[run]
device = "cpu"
results = "{results}"
threads = 1
"""


def finished_swap_study(tmp_path: Path, data_seed: int) -> tuple[Path, Path, Path]:
    """(data root, results root, study file) of the one-run study above, trained on random data."""
    data_root, results = tmp_path / "data", tmp_path / "results"
    write_mnist_rot(data_root, seed=data_seed)
    path = tmp_path / "swap.toml"
    path.write_text(textwrap.dedent(STUDY.format(root=data_root, results=results)))
    assert main([str(path)]) == 0
    return data_root, results, path


def test_swapped_data_files_are_refused_then_force_or_elsewhere(tmp_path, capsys):
    data_root, results, path = finished_swap_study(tmp_path, data_seed=2)
    store = StudyResults(results, "swap")
    first = pd.read_csv(store.runs_path)
    assert first.loc[0, "data_fingerprint"] == load_dataset("mnist-rot", root=data_root).meta["fingerprint"]

    write_mnist_rot(data_root, seed=3)  # same settings, other content
    capsys.readouterr()
    assert main([str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert f"{store.runs_path}: 1 finished runs of this study were made on other data" in err
    assert "--results DIR" in err and "--force" in err
    assert main([str(path), "--dry-run"]) == 0
    assert "     0       0       1" in capsys.readouterr().out  # not done on this data

    assert main([str(path), "--results", str(tmp_path / "elsewhere")]) == 0
    assert main([str(path), "--force"]) == 0
    forced = pd.read_csv(store.runs_path)
    new_fingerprint = load_dataset("mnist-rot", root=data_root).meta["fingerprint"]
    assert len(forced) == 1 and forced.loc[0, "data_fingerprint"] == new_fingerprint
    assert forced.loc[0, "data_fingerprint"] != first.loc[0, "data_fingerprint"]

    # a second seed on yet other data leaves one study with two fingerprints: the report refuses
    write_mnist_rot(data_root, seed=4)
    assert main([str(path), "--seeds", "1"]) == 0
    capsys.readouterr()
    assert report_main(["--results", str(results), "--out", str(tmp_path / "figs")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "runs made on different data" in err and "budget 5000 plain" in err


def test_old_runs_csv_without_fingerprints_is_read_with_a_notice(tmp_path, capsys):
    data_root, results, path = finished_swap_study(tmp_path, data_seed=5)
    store = StudyResults(results, "swap")
    pd.read_csv(store.runs_path).drop(columns="data_fingerprint").to_csv(store.runs_path, index=False)
    capsys.readouterr()
    assert main([str(path)]) == 0
    out = capsys.readouterr().out
    assert "1 runs from before data fingerprints were recorded" in out and "training 0" in out


def test_class_sorted_files_are_refused_below_a_class_boundary_and_stratified_keeps_shares(tmp_path):
    tmp_path.mkdir(exist_ok=True)
    write_amat(tmp_path / mnist_rot.MNIST_ROT_TRAIN, np.repeat(np.arange(10), 30), seed=6)  # sorted
    write_amat(tmp_path / mnist_rot.MNIST_ROT_TEST, np.arange(40) % 10, seed=7)
    with pytest.raises(DataError) as info:
        load_dataset("mnist-rot", root=tmp_path, limit_train=150)
    message = str(info.value)
    assert "\n" not in message and message.startswith("limit_train: the first 150 training digits hold")
    assert "no digit of class 5, 6, 7, 8, 9" in message and 'subset = "stratified"' in message
    data = load_dataset("mnist-rot", root=tmp_path, limit_train=150, subset="stratified", seed=3)
    counts = torch.bincount(data.y_train, minlength=10)
    assert counts.sum() == 150 and (counts - 15).abs().max() <= 1
    again = load_dataset("mnist-rot", root=tmp_path, limit_train=150, subset="stratified", seed=3)
    other = load_dataset("mnist-rot", root=tmp_path, limit_train=150, subset="stratified", seed=4)
    assert torch.equal(again.x_train, data.x_train) and not torch.equal(other.x_train, data.x_train)
    assert data.meta["fingerprint"] != other.meta["fingerprint"]


class SideEffect:
    """Unpickling this creates a file: what a planted checkpoint could do."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_checkpoint_that_would_run_code_is_not_unpickled(tiny_study, tmp_path, capsys):
    path = tiny_study(name="evil", arms='["plain"]', seeds="[0]", epochs=2)
    study = load_study(path)
    spec = expand_grid(study)[0]
    store = StudyResults(study.run.results, study.name)
    checkpoint = store.checkpoint(spec.run_key).path
    checkpoint.parent.mkdir(parents=True)
    marker = tmp_path / "pwned"
    torch.save({"epoch": 1, "history": [], "payload": SideEffect(str(marker))}, checkpoint)
    assert main([str(path)]) == 0
    assert not marker.exists()
    out = capsys.readouterr().out
    assert f"checkpoint {checkpoint} cannot be loaded safely" in out and "restarting the run" in out
    runs = pd.read_csv(store.runs_path)
    assert len(runs) == 1 and runs.loc[0, "epochs"] == 2 and runs.loc[0, "status"] == "ok"
