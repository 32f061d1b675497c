"""`python -m ablate.bench` prints its table and writes its numbers (values are timings: their
shape and spreads are checked, never their size), and `--study` estimates a study's cost."""

import json

import pytest

from ablate import bench as bench_module
from ablate.bench import main
from ablate.training import compiled, throughput


def _columns(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


ALL_ARMS = ["plain", "repeat", "gcnn", "augmented"]


def test_timings_alternate_and_each_step_gets_its_own():
    """Each repetition times every step once, the order reversed every other repetition, and
    each step's timings are its own calls' (a step that sleeps longer times longer)."""
    import time

    import torch

    calls = []

    def step(name, pause):
        return lambda: (calls.append(name), time.sleep(pause))

    fast, slow = step("a", 0.0), step("b", 0.002)
    times = throughput.timed_alternately([fast, slow], torch.device("cpu"), 0.0, 4)
    assert [len(t) for t in times] == [4, 4] and min(times[1]) > max(times[0])
    # 3 calls per warm-up and per timing (seconds=0): warm-up, then a-b, b-a, a-b, b-a
    assert "".join(calls) == "aaabbb" + ("aaabbb" + "bbbaaa") * 2


# bf16 timed whatever this CPU has (emulated bf16 runs at ~1 GFLOP/s, so one arm and small peak
# products), or left out as on a CPU without native bf16 (the default arms: all four, the
# augmented one included: it used to crash)
@pytest.mark.parametrize("native_bf16, arms", [(True, ["plain"]), (False, ALL_ARMS)], ids=["bf16", "no bf16"])
def test_bench_prints_medians_with_spreads_and_writes_json(tmp_path, capsys, monkeypatch, native_bf16, arms):
    monkeypatch.setattr(compiled, "BACKEND", "aot_eager")  # the compiled column's graphs, not inductor's
    monkeypatch.setattr(bench_module, "native_bf16", lambda device: native_bf16)
    monkeypatch.setattr(bench_module, "PEAK_SIZE", 256)
    out = tmp_path / "bench.json"
    args = ["--budget", "5000", "--seeds", "2", "--seconds", "0.02", "--repeats", "5", "--json", str(out)]
    args += ["--arms", ",".join(arms)] if arms != ALL_ARMS else []
    assert main(args) == 0
    table = capsys.readouterr().out.splitlines()
    assert "median (min–max) of 5 timings" in table[0] and "torch kernels" in table[0]
    header = next(line for line in table if line.startswith("| arm |"))
    columns = _columns(header)
    assert (
        columns[:3] == ["arm", "params", "img/s"]
        and {"img/s fused ×2", "img/s vmapped ×2", "vmapped vs fused"} <= set(columns)
        and "of fp32 peak" in columns
        and {"img/s compiled", "compiled speed-up", "warm-up s"} <= set(columns)
    )
    rows = {
        _columns(line)[0]: _columns(line) for line in table if line.startswith("| ") and "---" not in line
    }
    rows.pop("arm")
    assert list(rows) == arms and rows["plain"][1] == "5,001"
    assert all(len(cells) == len(columns) for cells in rows.values())
    assert "(" in rows[arms[-1]][2] and "–" in rows[arms[-1]][2]  # median (min–max)
    result = json.loads(out.read_text())
    assert [r["arm"] for r in result["arms"]] == arms
    assert result["seeds"] == 2 and result["repeats"] == 5
    timed = ("img_s", "img_s_fused", "img_s_vmapped", "img_s_compiled", "img_s_dataloader")
    timed += ("img_s_bf16",) * native_bf16
    for row in result["arms"]:
        assert row["warmup_s"] > 0
        for key in timed:
            assert {"median", "min", "max"} <= set(row[key])
            assert row[key]["min"] <= row[key]["median"] <= row[key]["max"]
        assert (row["img_s_bf16"] is None) == (row["speedup_bf16"] is None) == (not native_bf16)
    peaks = result["matmul_peak_gflop_s"]
    for peak in peaks.values() if native_bf16 else [peaks["fp32"]]:
        assert peak["min"] <= peak["median"] <= peak["max"]
    if not native_bf16:
        assert peaks["bf16"] is None and "bf16 not timed (no native bf16 here)" in table[0]
        bf16_cells = columns.index("img/s bf16"), columns.index("bf16 speed-up")
        assert all(cells[i] == "—" for cells in rows.values() for i in bf16_cells)


def test_bench_refuses_an_unknown_arm_in_one_line(capsys):
    assert main(["--arms", "plain,huge"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "error: --arms: expected one of plain, repeat, gcnn, augmented, wrong, wide, found 'huge'"


def test_bench_builder_times_its_three_arms_alone_and_vmapped(tmp_path, capsys):
    out = tmp_path / "builder.json"
    builder = "tests.builders:repeatnet"  # pools early: a cheap network keeps the suite in its time
    args = [
        "--builder",
        builder,
        "--sizes",
        "1,2",
        "--seconds",
        "0.001",
        "--repeats",
        "2",
        "--json",
        str(out),
    ]
    assert main(args) == 0
    table = capsys.readouterr().out.splitlines()
    assert (
        table[0].startswith(f"{builder} at budget 20,000, batch 64 per run") and "torch kernels" in table[0]
    )
    header = _columns(next(line for line in table if line.startswith("| arm |")))
    assert header == ["arm", "params", "unfused", "vmapped S=1", "vs unfused", "vmapped S=2", "vs unfused"]
    rows = [_columns(line) for line in table if line.startswith("| ") and "---" not in line][1:]
    assert [r[0] for r in rows] == ["plain", "repeat", "gcnn"] and all(len(r) == len(header) for r in rows)
    result = json.loads(out.read_text())
    for row in result["arms"]:
        assert set(row["img_s"]) == {"unfused", "S=1", "S=2"}
        assert all(t["min"] <= t["median"] <= t["max"] for t in row["img_s"].values())
    assert main(["--builder", builder, "--sizes", "1,x"]) == 2
    assert (
        capsys.readouterr().err.strip()
        == "error: --sizes: expected comma-separated positive integers, found '1,x'"
    )


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


def test_cpu_name_tells_the_cpu_kinds_apart_by_family_model_and_vector_isa(monkeypatch):
    import torch

    from ablate.training.machine import cpu_name

    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX2")
    block = "processor\t: {}\ncpu family\t: 25\nmodel\t\t: {}\nmodel name\t: AMD EPYC\nflags\t\t: fpu\n"
    two_cores = block.format(0, 1) + "\n" + block.format(1, 17)  # the first core's block names the CPU
    assert cpu_name(two_cores) == "AMD EPYC (family 25, model 1; torch kernels AVX2)"
    assert cpu_name(block.format(0, 17)) == "AMD EPYC (family 25, model 17; torch kernels AVX2)"
    assert cpu_name("").endswith("(torch kernels AVX2)")  # no /proc/cpuinfo: the platform's name
