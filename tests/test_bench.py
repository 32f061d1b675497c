"""`python -m ablate.bench` prints its table and writes its numbers (values are timings: not asserted)."""

import json

from ablate.bench import main


def test_bench_prints_a_row_per_arm_and_writes_json(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert (
        main(
            [
                "--budget",
                "5000",
                "--arms",
                "plain,gcnn",
                "--seeds",
                "2",
                "--seconds",
                "0.05",
                "--json",
                str(out),
            ]
        )
        == 0
    )
    table = capsys.readouterr().out.splitlines()
    header = next(line for line in table if line.startswith("| arm |"))
    columns = [c.strip() for c in header.strip("|").split("|")]
    assert (
        columns[:3] == ["arm", "params", "img/s"]
        and "img/s fused ×2" in columns
        and "of fp32 peak" in columns
    )
    rows = {
        line.split("|")[1].strip(): line
        for line in table
        if line.startswith("| ") and "---" not in line and line != header
    }
    assert set(rows) == {"plain", "gcnn"} and "| 5,001 |" in rows["plain"]
    assert all(len(line.strip("|").split("|")) == len(columns) for line in rows.values())
    result = json.loads(out.read_text())
    assert [r["arm"] for r in result["arms"]] == ["plain", "gcnn"] and result["seeds"] == 2
    keys = {
        "arm",
        "params",
        "img_s",
        "img_s_fused",
        "gflop_s",
        "peak_fraction",
        "img_s_bf16",
        "img_s_dataloader",
    }
    assert all(keys <= set(row) for row in result["arms"])
    assert result["arms"][0]["params"] == 5001 and set(result["matmul_peak_gflop_s"]) == {"fp32", "bf16"}


def test_bench_refuses_an_unknown_arm_in_one_line(capsys):
    assert main(["--arms", "plain,huge"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "error: --arms: expected one of plain, repeat, gcnn, augmented, found 'huge'"
