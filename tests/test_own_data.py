"""Your own data and symmetry: images from an .npz or an ImageFolder tree, colour and size, D_N
G-CNNs, and a backbone from the study file; every bad input is one line and exit 2 before any
training."""

import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from ablate._compat import tomllib
from ablate.data.example import write_example_npz
from ablate.data.sources import load_dataset
from ablate.models.arms import Group
from ablate.models.backbone import backbone_from_table
from ablate.models.gcnn import GCNN
from ablate.report.__main__ import main as report_main
from ablate.run import main as run_main

ROOT = Path(__file__).resolve().parents[1]


def example_study(tmp_path: Path, npz: Path, **data) -> Path:
    """studies/example_npz.toml on `npz`, results under tmp_path, threads 1."""
    text = (ROOT / "studies" / "example_npz.toml").read_text()
    text = text.replace('path = "build/example/digits32.npz"', f'path = "{npz}"')
    text = text.replace('results = "results"', f'results = "{tmp_path / "results"}"\nthreads = 1')
    for key, value in data.items():
        text = text.replace("[data]\n", f"[data]\n{key} = {value}\n")
    path = tmp_path / "example.toml"
    path.write_text(text)
    tomllib.loads(text)  # still TOML
    return path


def test_the_example_npz_study_runs_end_to_end_and_its_report_names_d4_and_the_size(tmp_path, capsys):
    # small enough for the suite (12 runs of D4 models on 32x32 colour images): 3 steps an epoch
    npz = write_example_npz(tmp_path / "digits32.npz", n_train=192, n_test=100)
    path = example_study(tmp_path, npz)
    assert run_main([str(path), "--jobs", "1"]) == 0
    runs = pd.read_csv(tmp_path / "results" / "example-npz" / "runs.csv")
    assert len(runs) == 12 and (runs["status"] == "ok").all()
    grouped = runs["arm"] != "plain"
    assert (runs.loc[grouped, "group"] == "D").all() and (runs.loc[~grouped, "group"] == "C").all()  # C1
    assert (runs["channels"] == 3).all() and (runs["classes"] == 10).all()
    assert set(runs["backbone"]) == {"three-layer"} and (runs["dataset"] == "npz").all()
    gcnn = runs[runs["arm"] == "gcnn"]
    assert (gcnn["invariance_error"] == 0).all() and (gcnn["invariance_D4"] == 0).all()  # turns and mirrors
    assert (abs(runs["n_params"] / runs["budget"] - 1) <= 0.02).all()
    capsys.readouterr()
    out = tmp_path / "figs"
    assert (
        report_main(["--results", str(tmp_path / "results"), "--study", "example-npz", "--out", str(out)])
        == 0
    )
    table = (out / "example-npz" / "table.md").read_text()
    assert table.startswith("# example-npz: digits32.npz (32x32, 3 channels) · D4 · 2 seeds per arm")
    assert "change predictions under their own group's exact" not in table  # exact on 32x32 inputs
    assert "D4 G-CNN" in capsys.readouterr().out


def test_a_d4_gcnn_is_exactly_invariant_to_turns_and_the_mirror():
    torch.manual_seed(0)
    backbone = backbone_from_table(kernels=[5, 3, 3], widths=[4, 6, 8], pool_after=[False, True, False])
    model = GCNN(backbone, [2, 3, 4], Group("D", 4), classes=10, channels=3).eval()
    x = torch.rand(6, 3, 16, 16)
    with torch.no_grad():
        logits = model(x)
        for image in (torch.rot90(x, 1, dims=(2, 3)), x.flip(-1), torch.rot90(x.flip(-2), 1, dims=(2, 3))):
            assert torch.allclose(model(image), logits, atol=1e-5)
            assert torch.equal(model(image).argmax(1), logits.argmax(1))
    c4 = GCNN(backbone, [2, 3, 4], Group("C", 4), classes=10, channels=3).eval()
    with torch.no_grad():
        assert not torch.allclose(c4(x.flip(-1)), c4(x), atol=1e-3)  # C4 alone is not mirror-invariant


def save_npz(path: Path, **arrays) -> Path:
    rng = np.random.default_rng(0)
    full = {
        "x_train": rng.integers(0, 256, (20, 16, 16), dtype=np.uint8),
        "y_train": np.arange(20) % 4,
        "x_test": rng.integers(0, 256, (8, 16, 16), dtype=np.uint8),
        "y_test": np.arange(8) % 4,
    }
    full.update(arrays)
    np.savez(path, **{k: v for k, v in full.items() if v is not None})
    return path


BAD_NPZ = {
    "missing array": ({"y_test": None}, "expected arrays x_train, y_train, x_test, y_test, missing y_test"),
    "wrong ndim": ({"x_train": np.zeros((20, 16), np.uint8)}, "x_train: expected images N x H x W or N x C"),
    "labels not 0..K-1": ({"y_test": np.arange(8) % 4 - 1}, "expected labels 0..K-1, found -1"),
    "class missing from train": ({"y_train": np.arange(20) % 3}, "missing 3"),
    "NaN pixels": ({"x_train": np.full((20, 16, 16), np.nan, np.float32)}, "expected finite pixels"),
    "mismatched counts": ({"y_train": np.arange(19) % 4}, "as many x_train images as y_train labels"),
    "non-square": ({"x_train": np.zeros((20, 16, 12), np.uint8), "x_test": np.zeros((8, 16, 12), np.uint8)},
                   "expected square images, found 16x12: set [data] size"),
    "object array": ({"x_test": np.array([{"a": 1}] * 8, dtype=object)}, "x_test: refused"),
}  # fmt: skip


def npz_study(tmp_path: Path, npz: Path) -> Path:
    path = tmp_path / "bad.toml"
    path.write_text(
        textwrap.dedent(
            f"""
            name = "bad"
            [data]
            source = "npz"
            path = "{npz}"
            [models]
            budgets = [5000]
            [models.backbone]
            kernels = [3, 3]
            widths = [8, 16]
            pool_after = [true, false]
            [train]
            seeds = [0]
            epochs = 1
            [run]
            results = "{tmp_path / "results"}"
            """
        )
    )
    return path


@pytest.mark.parametrize("case", list(BAD_NPZ))
def test_each_bad_npz_is_one_line_and_exit_2_before_training(case, tmp_path, capsys):
    arrays, expected = BAD_NPZ[case]
    if case == "object array":  # np.savez pickles it; np.load(allow_pickle=False) must refuse it
        npz = tmp_path / "data.npz"
        rng = np.random.default_rng(0)
        np.savez(npz, x_train=rng.integers(0, 256, (20, 16, 16), dtype=np.uint8), y_train=np.arange(20) % 4,
                 x_test=arrays["x_test"], y_test=np.arange(8) % 4)  # fmt: skip
    else:
        npz = save_npz(tmp_path / "data.npz", **arrays)
    assert run_main([str(npz_study(tmp_path, npz))]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(npz) in err and expected in err, err
    assert not (tmp_path / "results" / "bad" / "runs.csv").exists()


def write_png(path: Path, array: np.ndarray) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def image_folder(root: Path, size=12, colour=True) -> Path:
    rng = np.random.default_rng(0)
    for split, count in (("train", 6), ("test", 2)):
        for name in ("cat", "dog"):
            for i in range(count):
                shape = (size, size, 3) if colour else (size, size)
                write_png(root / split / name / f"{i}.png", rng.integers(0, 256, shape, dtype=np.uint8))
    return root


def test_an_image_folder_is_decoded_once_cached_and_revalidated(tmp_path, capsys):
    root = image_folder(tmp_path / "pets")
    cache = tmp_path / "cache"
    data = load_dataset("folder", cache, path=root, size=16)
    assert data.x_train.shape == (12, 3, 16, 16) and data.meta["classes"] == 2 and data.meta["channels"] == 3
    assert sorted(data.y_train.tolist()) == [0] * 6 + [1] * 6
    again = load_dataset("folder", cache, path=root, size=16)
    assert torch.equal(again.x_train, data.x_train) and again.meta["fingerprint"] == data.meta["fingerprint"]
    assert len(list((cache / "folders").glob("*.npz"))) == 1
    write_png(root / "train" / "cat" / "0.png", np.zeros((12, 12, 3), np.uint8))  # a file changed
    capsys.readouterr()
    changed = load_dataset("folder", cache, path=root, size=16)
    assert "is out of date" in capsys.readouterr().out
    assert changed.meta["fingerprint"] != data.meta["fingerprint"]
    grey = load_dataset("folder", cache, path=image_folder(tmp_path / "grey", colour=False))
    assert grey.x_train.shape == (12, 1, 12, 12)


def test_bad_image_folders_are_one_line(tmp_path):
    from ablate.errors import DataError

    root = image_folder(tmp_path / "pets")
    (root / "train" / "bird").mkdir()
    with pytest.raises(DataError, match=r"train/bird: expected images .* found an empty class folder"):
        load_dataset("folder", tmp_path / "cache", path=root)
    (root / "train" / "bird").rmdir()
    (root / "train" / "dog" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match=r"dog/broken.png: expected an image file, found unreadable content"):
        load_dataset("folder", tmp_path / "cache", path=root)


def test_study_file_errors_for_own_data_name_the_key(tmp_path, capsys):
    npz = save_npz(tmp_path / "data.npz")
    path = npz_study(tmp_path, npz)
    bad = path.read_text().replace('source = "npz"', 'source = "embedded"')
    path.write_text(bad)
    assert run_main([str(path)]) == 2
    assert "data: expected path = FILE for the npz and folder sources" in capsys.readouterr().err
    text = npz_study(tmp_path, npz).read_text().replace("widths = [8, 16]", "widths = [8]")
    path.write_text(text)
    assert run_main([str(path)]) == 2
    assert (
        "models.backbone: expected one widths entry per layer (2, as kernels), found 1"
        in capsys.readouterr().err
    )
    path.write_text(
        f'name = "bad"\n[data]\nsource = "npz"\npath = "{npz}"\n[models]\ngroup = "D"\n'
        'preset = "repeatnet-paper"\n[train]\nseeds = [0]\n'
    )
    assert run_main([str(path)]) == 2
    assert "group within the repeatnet-paper preset" in capsys.readouterr().err
    odd = save_npz(
        tmp_path / "odd.npz", x_train=np.zeros((20, 15, 15), np.uint8), x_test=np.zeros((8, 15, 15), np.uint8)
    )
    assert run_main([str(npz_study(tmp_path, odd))]) == 2
    err = capsys.readouterr().err
    assert "on 15x15 inputs" in err and "sizes that fit near it: " in err
