"""results.py: one schema per results file, and the saved study read back through study.py."""

import dataclasses

import pandas as pd
import pytest
import torch

from ablate.models.arms import Group
from ablate.models.spec import ArmSpec
from ablate.results import HISTORY_COLUMNS, RUN_COLUMNS, HistoryRow, RunRow, StudyResults, read_runs
from ablate.study.schema import parse_study
from ablate.training.runs import NOT_IN_RUNS, spec_columns

IDENT = {"study": "s", "run_key": "k", "arm": "plain", "budget": 5000, "seed": 0}


def run_row(**changes) -> RunRow:
    values = {c: 0 for c in RUN_COLUMNS} | IDENT | {"status": "ok"} | changes
    return RunRow(**values)


def test_columns_are_the_documented_ones_and_every_model_field_is_a_column():
    # the README's runs.csv table (docs/study.md) lists these, in this order
    documented = (
        "study run_key arm budget seed n_params macs group_order repeat_mode backbone learnable_widths "
        "physical_widths dataset n_train n_test epochs test_error invariance_error train_loss "
        "train_error train_seconds device status finished_at ablate_version torch_version "
        "escnn_version data_fingerprint fused precision repeat_structure invariance_error_any model_name "
        "preset_width code_fingerprint group channels classes builder builder_source width base_scale "
        "compiled cpu invariance_C2 invariance_C4 invariance_D1 invariance_D2 invariance_D4 orbit_error_C2 "
        "orbit_error_C4 orbit_error_D1 orbit_error_D2 orbit_error_D4 wrong_group"
    ).split()
    assert RUN_COLUMNS == documented
    assert (
        HISTORY_COLUMNS
        == "study run_key arm budget seed epoch train_loss train_error test_error lr seconds".split()
    )
    model_fields = set(ArmSpec("plain", "repeatnet", (2,), (2,), 10).flat()) - set(NOT_IN_RUNS)
    assert model_fields <= set(RUN_COLUMNS)  # a new ArmSpec field is a column unless excluded


def test_spec_columns_fill_every_model_column_of_a_row():
    spec = ArmSpec("repeat", "repeatnet", (2, 3), (8, 12), 1234, Group("C", 4), "swish", "matched")
    columns = spec_columns(spec)
    assert columns["learnable_widths"] == "2-3" and columns["physical_widths"] == "8-12"
    assert columns["repeat_structure"] == "matched" and columns["model_name"] == ""
    plain = spec_columns(ArmSpec("plain", "repeatnet", (2,), (2,), 10))
    assert plain["repeat_mode"] == "" and plain["repeat_structure"] == "" and plain["group_order"] == 1
    assert plain["group"] == "C" and columns["group_order"] == 4 and columns["group"] == "C"
    d1 = spec_columns(ArmSpec("gcnn", "repeatnet", (2,), (4,), 10, Group("D", 1)))
    assert (d1["group"], d1["group_order"]) == ("D", 1)  # the mirror group, not the plain arm's C1


def test_a_misnamed_or_missing_column_is_refused(tmp_path):
    values = {c: 0 for c in RUN_COLUMNS}
    with pytest.raises(TypeError, match="tset_error"):
        RunRow(**(values | {"tset_error": 0.1}))
    del values["test_error"]
    with pytest.raises(TypeError, match="test_error"):
        RunRow(**values)
    store = StudyResults(tmp_path, "s")
    with pytest.raises(TypeError, match="expected a RunRow"):
        store.record({c: 0 for c in RUN_COLUMNS}, [])
    with pytest.raises(TypeError, match="HistoryRow"):
        store.record(run_row(), [{"epoch": 1}])
    assert not store.runs_path.exists()


def test_record_writes_every_column_once_and_refuses_a_second_copy(tmp_path):
    store = StudyResults(tmp_path, "s")
    history = [
        HistoryRow(**IDENT, epoch=1, train_loss=1.0, train_error=0.5, test_error=0.4, lr=1e-3, seconds=1.0)
    ]
    assert store.record(run_row(test_error=0.25), history)
    assert not store.record(run_row(test_error=0.5), history)
    runs = pd.read_csv(store.runs_path)
    assert list(runs.columns) == RUN_COLUMNS and len(runs) == 1 and runs.loc[0, "test_error"] == 0.25
    assert list(pd.read_csv(store.history_path).columns) == HISTORY_COLUMNS
    assert store.record(run_row(test_error=0.5, finished_at="t2"), history, replace=True)
    assert read_runs(store.runs_path)["test_error"].tolist() == [0.5]
    # the replaced row and its history are kept in superseded/, once however often it is recorded
    assert store.superseded_runs()["test_error"].tolist() == [0.25]
    assert len(store.superseded_history()) == 1
    store._supersede(store.superseded_runs(), store.superseded_history())  # an interrupted record again
    assert len(store.superseded_runs()) == 1 and len(store.superseded_history()) == 1
    assert store.record(run_row(test_error=0.75, finished_at="t3"), history, replace=True)
    assert store.superseded_runs()["test_error"].tolist() == [0.25, 0.5]
    assert len(store.runs()) == 1 and len(store.history()) == 1


def test_a_recorded_float_survives_later_records_bit_for_bit(tmp_path):
    """Each record rewrites the CSVs: a value read back and written again must be the same double
    (pandas' default fast parser is off by one ulp for some, e.g. a float32 error as a double)."""
    store = StudyResults(tmp_path, "s")
    error = float(torch.tensor(0.2596666812896729, dtype=torch.float32))  # 0.25966668128967285
    history = [
        HistoryRow(**IDENT, epoch=1, train_loss=1.0, train_error=0.5, test_error=error, lr=1e-3, seconds=1.0)
    ]
    assert store.record(run_row(test_error=error), history)
    other = IDENT | {"run_key": "k2", "seed": 1}
    later = [dataclasses.replace(history[0], run_key="k2", seed=1)]
    assert store.record(run_row(**other), later)
    assert store.runs()["test_error"].iloc[0] == error and store.history()["test_error"].iloc[0] == error
    assert repr(error) in store.runs_path.read_text()


def test_saved_study_is_parsed_like_a_study_file(tmp_path):
    store = StudyResults(tmp_path, "s")
    assert store.saved_study() is None
    study = parse_study({"name": "s", "models": {"budgets": [5000]}, "train": {"seeds": [0, 1]}})
    store.write_study(study)
    assert store.saved_study() == study
    (store.dir / "study.toml").write_text(
        'name = "s"\n[models]\nbudgets = [5000]\nwidth = 3\n[train]\nseeds = [0]\n'
    )
    with pytest.raises(ValueError, match=r"study.toml: models.width: unknown key"):
        store.saved_study()
