"""`python -m ablate.bench` prints its table and writes its numbers (values are timings: their
shape and spreads are checked, never their size), and `--study` estimates a study's cost."""

import json

from ablate.bench import main
from ablate.training import compiled


def _columns(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def test_bench_with_its_default_arms_prints_medians_with_spreads_and_writes_json(
    tmp_path, capsys, monkeypatch
):
    monkeypatch.setattr(compiled, "BACKEND", "aot_eager")  # the compiled column's graphs, not inductor's
    out = tmp_path / "bench.json"
    # the default arms (all four, the augmented one included: it used to crash), short timings
    args = ["--budget", "5000", "--seeds", "2", "--seconds", "0.02", "--repeats", "5", "--json", str(out)]
    assert main(args) == 0
    table = capsys.readouterr().out.splitlines()
    assert "median (min–max) of 5 timings" in table[0]
    header = next(line for line in table if line.startswith("| arm |"))
    columns = _columns(header)
    assert (
        columns[:3] == ["arm", "params", "img/s"]
        and "img/s fused ×2" in columns
        and "of fp32 peak" in columns
        and {"img/s compiled", "compiled speed-up", "warm-up s"} <= set(columns)
    )
    rows = {
        _columns(line)[0]: _columns(line) for line in table if line.startswith("| ") and "---" not in line
    }
    rows.pop("arm")
    assert set(rows) == {"plain", "repeat", "gcnn", "augmented"} and rows["plain"][1] == "5,001"
    assert all(len(cells) == len(columns) for cells in rows.values())
    assert "(" in rows["gcnn"][2] and "–" in rows["gcnn"][2]  # median (min–max)
    result = json.loads(out.read_text())
    assert [r["arm"] for r in result["arms"]] == ["plain", "repeat", "gcnn", "augmented"]
    assert result["seeds"] == 2 and result["repeats"] == 5
    for row in result["arms"]:
        assert row["warmup_s"] > 0
        for key in ("img_s", "img_s_fused", "img_s_compiled", "img_s_bf16", "img_s_dataloader"):
            assert {"median", "min", "max"} <= set(row[key])
            assert row[key]["min"] <= row[key]["median"] <= row[key]["max"]
    for peak in result["matmul_peak_gflop_s"].values():
        assert peak["min"] <= peak["median"] <= peak["max"]


def test_bench_refuses_an_unknown_arm_in_one_line(capsys):
    assert main(["--arms", "plain,huge"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "error: --arms: expected one of plain, repeat, gcnn, augmented, found 'huge'"


def test_bench_study_times_every_cell_and_estimates_the_cost(tiny_study, capsys, tmp_path):
    path = tiny_study("cost", budgets="[5000, 10000]", epochs=3)
    out = tmp_path / "cost.json"
    assert main(["--study", str(path), "--jobs", "2", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("study cost: one epoch of every cell timed; estimates for 3 epochs")
    cells = json.loads(out.read_text())
    assert len(cells) == 6 and {c["model"] for c in cells} == {"plain", "repeat C4", "gcnn C4"}
    for cell in cells:
        assert cell["runs"] == 2 and cell["steps"] > 0 and cell["eval"] > 0
        assert cell["compiled"] is False  # "auto": a tiny study is not worth a warm-up
        parts = cell["build"] + 3 * cell["steps"] + 3 * cell["eval"] + cell["final"]
        assert abs(cell["run_s"] - parts) < 1e-9 and abs(cell["cell_s"] - 2 * cell["run_s"]) < 1e-9
    assert "for 12 runs one at a time, about" in printed and "with --jobs 2" in printed
    assert main(["--study", str(tmp_path / "missing.toml")]) == 2
