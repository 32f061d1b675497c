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
    table = capsys.readouterr().out
    assert "| plain | 5,001 |" in table and "| gcnn |" in table and "fused ×2" in table
    result = json.loads(out.read_text())
    assert [r["arm"] for r in result["arms"]] == ["plain", "gcnn"] and result["seeds"] == 2
    for row in result["arms"]:
        assert row["img_s"] > 0 and row["img_s_fused"] > 0 and row["img_s_dataloader"] > 0
        assert 0 < row["peak_fraction"] and row["gflop_s"] > 0
    assert result["matmul_peak_gflop_s"]["fp32"] > 0


def test_bench_refuses_an_unknown_arm_in_one_line(capsys):
    assert main(["--arms", "plain,huge"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "error: --arms: expected one of plain, repeat, gcnn, augmented, found 'huge'"
