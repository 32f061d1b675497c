"""`python -m ablate.run`: end to end, resume, concurrency, divergence."""

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from ablate.data.sources import load_dataset
from ablate.results import HISTORY_COLUMNS, RUN_COLUMNS, StudyResults
from ablate.run import main
from ablate.study.grid import expand_grid
from ablate.study.schema import TrainConfig, load_study
from ablate.training.driver import run_study
from ablate.training.loop import build_model, exact_fp32, fit

ROOT = Path(__file__).resolve().parents[1]


def test_tiny_study_end_to_end_writes_documented_columns(tiny_study, capsys):
    path = tiny_study()
    assert main([str(path)]) == 0
    store = StudyResults(path.parent / "results", "tiny")
    runs = pd.read_csv(store.runs_path)
    assert list(runs.columns) == RUN_COLUMNS
    assert len(runs) == 6 and runs["run_key"].is_unique
    assert sorted(runs["arm"].unique()) == ["gcnn", "plain", "repeat"] and set(runs["seed"]) == {0, 1}
    assert (runs["status"] == "ok").all() and runs["test_error"].between(0, 1).all()
    assert (runs.loc[runs["arm"] == "gcnn", "invariance_error"] == 0).all()
    assert (runs["n_train"] == 160).all() and (runs["n_test"] == 64).all()
    assert runs["macs"].gt(0).all() and abs(runs["n_params"] / 5000 - 1).max() <= 0.02
    history = pd.read_csv(store.history_path)
    assert list(history.columns) == HISTORY_COLUMNS and len(history) == 12
    assert (store.dir / "study.toml").exists()
    assert not list((store.dir / "checkpoints").glob("*.pt"))
    page = (ROOT / "docs" / "study.md").read_text()
    undocumented = [c for c in RUN_COLUMNS + HISTORY_COLUMNS if f"`{c}`" not in page]
    assert not undocumented, f"docs/study.md does not document {undocumented}"
    # a rerun trains nothing
    capsys.readouterr()
    assert main([str(path)]) == 0
    assert "6 of 6 runs already finished; training 0" in capsys.readouterr().out
    assert len(pd.read_csv(store.runs_path)) == 6


class Interrupt(Exception):
    pass


def test_fit_resumes_to_the_same_weights(tmp_path):
    from ablate.results import Checkpoint

    data = load_dataset("embedded", limit_train=96, limit_test=32)
    spec = expand_grid(load_study_text(tmp_path, arms='["repeat"]'))[0].model
    config = TrainConfig(epochs=3, batch_size=32, constant_epochs=1, augment="rotation")
    straight = build_model(spec, 5, torch.device("cpu"))
    reference = fit(straight, data, config, seed=5)

    def stop_after_two(row):
        if row["epoch"] == 2:
            raise Interrupt

    checkpoint = Checkpoint(tmp_path / "ck.pt")
    with pytest.raises(Interrupt):
        fit(build_model(spec, 5, torch.device("cpu")), data, config, 5, checkpoint, stop_after_two)
    assert checkpoint.load()["epoch"] == 2
    resumed_model = build_model(spec, 5, torch.device("cpu"))
    resumed = fit(resumed_model, data, config, 5, checkpoint)
    assert resumed.test_error == reference.test_error
    assert [h["train_loss"] for h in resumed.history] == pytest.approx(
        [h["train_loss"] for h in reference.history]
    )
    for (name, a), b in zip(straight.state_dict().items(), resumed_model.state_dict().values()):
        assert torch.allclose(a.float(), b.float(), atol=1e-6), name


def load_study_text(tmp_path, **kw):
    from tests.conftest import TINY

    path = tmp_path / "s.toml"
    fields = dict(
        name="s",
        arms='["plain"]',
        seeds="[0]",
        epochs=2,
        lr=1e-3,
        results=str(tmp_path / "r"),
        budgets="[5000]",
    )
    fields.update(kw)
    path.write_text(TINY.format(**fields))
    return load_study(path)


def test_kill_and_resume_matches_uninterrupted_run(tiny_study, tmp_path):
    interrupted = load_study(tiny_study(name="cut", arms='["plain", "gcnn"]', seeds="[0]", epochs=3))
    calls = []

    def die_in_second_run(row):
        calls.append(row["epoch"])
        if len(calls) == 5:  # run 1 took 3 epochs; run 2 dies after its epoch 2
            raise Interrupt

    with pytest.raises(Interrupt):
        run_study(interrupted, on_epoch=die_in_second_run)
    store = StudyResults(interrupted.run.results, "cut")
    first = pd.read_csv(store.runs_path)
    assert len(first) == 1 and len(list((store.dir / "checkpoints").glob("*.pt"))) == 1
    epochs_seen = []
    run_study(interrupted, on_epoch=lambda row: epochs_seen.append(row["epoch"]))
    assert epochs_seen == [3]  # only the last epoch of the cut run; the finished run is not retrained
    resumed = pd.read_csv(store.runs_path)
    assert resumed.loc[0, "finished_at"] == first.loc[0, "finished_at"]
    clean = load_study(tiny_study(name="clean", arms='["plain", "gcnn"]', seeds="[0]", epochs=3))
    run_study(clean)
    reference = pd.read_csv(StudyResults(clean.run.results, "clean").runs_path)
    merged = resumed.merge(reference, on="run_key", suffixes=("", "_ref"))
    assert len(merged) == 2  # same run keys: the study name is not part of a run's identity
    assert (merged["test_error"] == merged["test_error_ref"]).all()
    for column in ("invariance_error", "invariance_C4", "invariance_D4"):  # NaN (plain's own) where both are
        assert merged[column].equals(merged[f"{column}_ref"]), column
    history = pd.read_csv(store.history_path)
    assert len(history) == 6 and not history.duplicated(["run_key", "epoch"]).any()


def test_two_concurrent_processes_train_each_run_once(tiny_study):
    path = tiny_study(name="race", seeds="[0, 1]")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "ablate.run", str(path)]
    procs = [
        subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    trained = sum(
        line.strip().startswith(("plain", "repeat", "gcnn")) and "budget" in line
        for out, _ in outs
        for line in out.splitlines()
    )
    assert trained == 6
    store = StudyResults(path.parent / "results", "race")
    runs = pd.read_csv(store.runs_path)
    assert len(runs) == 6 and runs["run_key"].is_unique
    history = pd.read_csv(store.history_path)
    assert len(history) == 12 and not history.duplicated(["run_key", "epoch"]).any()


def test_diverging_run_is_recorded_and_study_completes(tiny_study):
    path = tiny_study(name="boom", arms='["plain"]', seeds="[0, 1]", lr=1e30)
    assert main([str(path)]) == 0
    runs = pd.read_csv(StudyResults(path.parent / "results", "boom").runs_path)
    assert len(runs) == 2 and (runs["status"] == "diverged").all() and runs["test_error"].isna().all()


def test_changed_setting_gives_new_keys_and_keeps_old_rows(tiny_study):
    path = tiny_study(name="change", arms='["plain"]', seeds="[0]", epochs=1)
    assert main([str(path)]) == 0
    assert main([str(path), "--seeds", "3"]) == 0
    runs = pd.read_csv(StudyResults(path.parent / "results", "change").runs_path)
    assert sorted(runs["seed"]) == [0, 3]
    assert main([str(path), "--force"]) == 0
    again = pd.read_csv(StudyResults(path.parent / "results", "change").runs_path)
    assert len(again) == 2 and again["run_key"].is_unique


def test_retrain_replaces_other_code_runs_resumably_and_keeps_the_old_rows(tiny_study, monkeypatch, capsys):
    import ablate.training.driver as driver
    import ablate.training.runs as runs_module

    path = tiny_study(name="again", arms='["plain"]', seeds="[0, 1]", epochs=1)
    store = StudyResults(path.parent / "results", "again")
    assert main([str(path)]) == 0
    first = store.runs()
    assert first["cpu"].str.contains("torch kernels").all()  # the CPU kind that trained each run
    assert main([str(path), "--retrain"]) == 0  # same code: nothing to retrain
    assert "2 of 2 runs already finished; training 0" in capsys.readouterr().out
    for module in (driver, runs_module):  # the driver's check and the rows it records
        monkeypatch.setattr(module, "code_fingerprint", lambda: "0.0.0+newcode")
    assert main([str(path), "--retrain", "--seeds", "1"]) == 0
    assert main([str(path), "--retrain", "--seeds", "1"]) == 0  # resumed: seed 1 is this code's now
    assert "1 of 1 runs already finished; training 0" in capsys.readouterr().out
    runs, old = store.runs(), store.superseded_runs()
    assert len(runs) == 2 and runs["run_key"].is_unique and len(store.history()) == 2
    assert runs.set_index("seed")["code_fingerprint"].to_dict() == {
        0: first.loc[0, "code_fingerprint"],
        1: "0.0.0+newcode",
    }
    assert old["seed"].tolist() == [1] and old["code_fingerprint"].tolist() == [
        first.loc[1, "code_fingerprint"]
    ]
    assert len(store.superseded_history()) == 1
    assert load_study(store.dir / "study.toml").train.seeds == [0, 1]  # --seeds narrowed the training only


def test_dry_run_prints_grid_and_trains_nothing(tiny_study, capsys):
    path = tiny_study(name="dry")
    assert main([str(path), "--dry-run", "--arms", "plain,gcnn"]) == 0
    out = capsys.readouterr().out
    assert "4 runs" in out and "plain" in out and "gcnn" in out and "repeat" not in out.split("\n", 2)[2]
    assert not (path.parent / "results" / "dry").exists()


def test_run_key_ignores_paths_and_device_but_not_training(tmp_path):
    base = expand_grid(load_study_text(tmp_path))[0].run_key
    moved = expand_grid(load_study_text(tmp_path, results=str(tmp_path / "elsewhere")))[0].run_key
    longer = expand_grid(load_study_text(tmp_path, epochs=3))[0].run_key
    reseeded = expand_grid(load_study_text(tmp_path, seeds="[1]"))[0].run_key
    assert base == moved and len({base, longer, reseeded}) == 3


def test_bf16_on_the_cpu_trains_is_recorded_and_keyed(tiny_study):
    from ablate.study.schema import with_overrides

    study = load_study(tiny_study(name="half", arms='["gcnn"]', seeds="[0]", epochs=1))
    half = with_overrides(study, "test", train={"bf16": True})
    assert expand_grid(half)[0].run_key != expand_grid(study)[0].run_key
    run_study(half)
    runs = pd.read_csv(StudyResults(half.run.results, "half").runs_path)
    assert runs.loc[0, "precision"] == "bf16" and runs.loc[0, "status"] == "ok"
    assert runs.loc[0, "invariance_error"] <= 0.02  # bf16 rounding may flip a near-tie, rarely


def test_fp32_training_on_cuda_turns_tf32_off_and_leaves_the_cpu_alone():
    flags = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    try:
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = True
        exact_fp32(torch.device("cpu"))
        assert torch.backends.cudnn.allow_tf32 and torch.backends.cuda.matmul.allow_tf32
        exact_fp32(torch.device("cuda"))  # sets torch's flags only: runs without a GPU
        assert not torch.backends.cudnn.allow_tf32 and not torch.backends.cuda.matmul.allow_tf32
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = flags


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device; the CPU path is tested above")
def test_cuda_training_with_bf16_runs_and_stays_invariant(tmp_path):
    data = load_dataset("embedded", limit_train=256, limit_test=128).to("cuda")
    spec = expand_grid(load_study_text(tmp_path, arms='["gcnn"]'))[0].model
    model = build_model(spec, 0, torch.device("cuda"))
    result = fit(model, data, TrainConfig(epochs=2, batch_size=64, bf16=True, augment="rotation"), seed=0)
    assert result.status == "ok" and 0 <= result.test_error <= 1 and result.invariance_error <= 0.01


def test_ctrl_c_leaves_files_consistent_and_the_rerun_completes(tiny_study):
    import signal
    import time

    path = tiny_study(name="sigint", arms='["plain", "gcnn"]', seeds="[0, 1]", epochs=4)
    store = StudyResults(path.parent / "results", "sigint")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    # A terminal's Ctrl-C reaches a run whose SIGINT is at its default. A suite started in the
    # background by a non-interactive shell (`make test &`, `nohup ... &`) ignores SIGINT, and an
    # ignored SIGINT is inherited and kept by Python, so the run would rightly not stop: reset it.
    proc = subprocess.Popen(
        [sys.executable, "-m", "ablate.run", str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.time() + 120
    while time.time() < deadline and not list((store.dir / "checkpoints").glob("*.pt")):
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "rerun the same command to resume" in err, err[-3000:]
    done = len(pd.read_csv(store.runs_path)) if store.runs_path.exists() else 0
    assert done < 4  # it really was interrupted
    assert main([str(path)]) == 0
    runs, history = pd.read_csv(store.runs_path), pd.read_csv(store.history_path)
    assert len(runs) == 4 and runs["run_key"].is_unique
    assert len(history) == 16 and not history.duplicated(["run_key", "epoch"]).any()
